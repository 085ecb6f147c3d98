//! `basalt`: the user's command line. `validate` and `describe` check a LAVA job (and its
//! pipeline on a device) without touching hardware.

use anyhow::{Context, Result};
use basalt::device::Device;
use basalt::job::{parse_job_file, Job};
use basalt::pipeline::{build_pipeline, Pipeline};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status for input that is not valid (LAVA's "invalid job").
const EXIT_INVALID: u8 = 2;

#[derive(Parser)]
#[command(
    name = "basalt",
    version,
    about = "A lean LAVA-compatible board farm: validate, describe and run LAVA jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a job definition (and, with --device, that its pipeline can be built there).
    /// Exit 0 when valid, 2 when not.
    Validate(JobArgs),
    /// Print the pipeline of a job on a device as YAML: level, name, description, timeout.
    Describe(DescribeArgs),
}

#[derive(Args)]
struct DeviceArgs {
    /// A device dictionary (`.jinja2`) or an already rendered device YAML.
    #[arg(long)]
    device: Option<PathBuf>,
    /// Where device-type templates are found (repeatable, searched in order, before the
    /// built-in ones).
    #[arg(long = "device-types", value_name = "DIR")]
    device_types: Vec<PathBuf>,
}

#[derive(Args)]
struct JobArgs {
    /// The job definition (LAVA V2 YAML).
    job: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct DescribeArgs {
    job: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => validate(&a),
        Command::Describe(a) => describe(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("basalt: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Where device-type templates are looked up: the user's directories, then `/etc/basalt`,
/// then the templates shipped in the source tree.
fn template_dirs(user: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = user.to_vec();
    dirs.push(PathBuf::from("/etc/basalt/device-types"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/device-types"));
    dirs
}

/// Reads the job; prints its diagnostics. `None` when it is invalid.
fn load_job(path: &Path, quiet: bool) -> Option<Job> {
    match parse_job_file(path) {
        Ok((job, report)) => {
            if !quiet {
                for w in report.warnings() {
                    eprintln!("{}", report.line(w));
                }
            }
            Some(job)
        }
        Err(e) => {
            eprint!("{}", e.report);
            let n = e.report.errors().count();
            eprintln!(
                "{}: invalid job ({n} error{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            None
        }
    }
}

/// Loads the device for a job and builds the pipeline; prints what is wrong.
fn load_pipeline(
    job_path: &Path,
    job: &Job,
    dev: &DeviceArgs,
    device: &Path,
) -> Result<Option<(Device, Pipeline)>> {
    let device = Device::load(device, &template_dirs(&dev.device_types), &job.context)
        .with_context(|| format!("device {}", device.display()))?;
    match build_pipeline(job, &device) {
        Ok(p) => Ok(Some((device, p))),
        Err(errors) => {
            for e in &errors {
                eprintln!("{}:{e}", job_path.display());
            }
            eprintln!(
                "{}: cannot run on device '{}' ({}): {} error{}",
                job_path.display(),
                device.hostname,
                device.device_type,
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            Ok(None)
        }
    }
}

fn validate(a: &JobArgs) -> Result<ExitCode> {
    let Some(job) = load_job(&a.job, a.quiet) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let Some(dev) = &a.device.device else {
        if !a.quiet {
            println!(
                "{}: valid job '{}' ({} actions)",
                a.job.display(),
                job.job_name,
                job.actions.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some((device, pipeline)) = load_pipeline(&a.job, &job, &a.device, dev)? else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    if !a.quiet {
        println!(
            "{}: valid job '{}' on device '{}' ({}): {} actions",
            a.job.display(),
            job.job_name,
            device.hostname,
            device.device_type,
            pipeline.walk().len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(a: &DescribeArgs) -> Result<ExitCode> {
    let Some(job) = load_job(&a.job, true) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let dev = a
        .device
        .device
        .as_deref()
        .context("describe needs --device")?;
    let Some((_, pipeline)) = load_pipeline(&a.job, &job, &a.device, dev)? else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    print!("{}", basalt::yaml::emit_document(&pipeline.describe()));
    Ok(ExitCode::SUCCESS)
}
