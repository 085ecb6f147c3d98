//! What the benches share: statistics and reading a job's output directory.
#![allow(dead_code)]

/// The median of `v` (not empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The 90th percentile of `v` (not empty).
pub fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// Duration of the boot action (`boot-image-retry`) from results.yaml.
pub fn boot_duration(results: &str) -> Option<f64> {
    let doc = basalt::yaml::load(results).ok()?;
    doc.as_seq()?
        .iter()
        .find(|r| r.get("case").and_then(|c| c.as_str()) == Some("boot-image-retry"))?
        .get("duration")?
        .as_str()?
        .parse()
        .ok()
}

/// (cpu seconds, peak RSS MiB) from the log's resource line.
pub fn usage(log: &str) -> Option<(f64, f64)> {
    let line = log.lines().find(|l| l.contains("basalt resources: cpu "))?;
    let rest = line.split("basalt resources: cpu ").nth(1)?;
    let cpu: f64 = rest.split(' ').next()?.parse().ok()?;
    let rss: f64 = rest
        .split("peak rss ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((cpu, rss))
}
