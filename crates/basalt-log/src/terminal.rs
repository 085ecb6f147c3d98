//! The line on stderr: `tracing-subscriber`'s compact format (time, level, target, message,
//! `name=value` fields), less the subject fields ([`SUBJECTS`]): a message names its job,
//! worker or device in its own words ("job 42 on worker rack-1: worker lost"), and the fields
//! carry the same for the journal (`JOB_ID=42`), so the terminal would say it twice. The
//! default field formatter does the rest (its spacing, its escaping of control characters).

use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// Fields every message already names: journal fields only.
pub const SUBJECTS: &[&str] = &["job_id", "worker", "device"];

/// [`DefaultFields`] without the [`SUBJECTS`].
#[derive(Default)]
pub struct Fields(DefaultFields);

impl<'a> MakeVisitor<Writer<'a>> for Fields {
    type Visitor = Skip<<DefaultFields as MakeVisitor<Writer<'a>>>::Visitor>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        Skip(self.0.make_visitor(target))
    }
}

/// A visitor that passes every field but the [`SUBJECTS`] on to the one it wraps.
pub struct Skip<V>(V);

fn shown(field: &Field) -> bool {
    !SUBJECTS.contains(&field.name())
}

impl<V: Visit> Visit for Skip<V> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if shown(field) {
            self.0.record_str(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if shown(field) {
            self.0.record_error(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if shown(field) {
            self.0.record_debug(field, value);
        }
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for Skip<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for Skip<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// What the stderr layer writes, into a buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_line_keeps_the_message_and_other_fields_and_drops_the_subjects() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .compact()
            .without_time()
            .with_ansi(false)
            .fmt_fields(Fields::default())
            .with_writer(move || out.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                job_id = 42u64,
                worker = "rack-1",
                seq = 7u64,
                "job 42 on worker rack-1: lost"
            );
            tracing::info!(
                "workers on tcp://127.0.0.1:5556, API on http://127.0.0.1:8080/api/v0.2/"
            );
            tracing::info!(device = "qemu-1", "a \x1b[31mred\x1b[0m job");
        });
        let text = String::from_utf8_lossy(&buffer.0.lock().expect("buffer")).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with(" WARN "), "{text}");
        assert!(
            lines[0].ends_with(": job 42 on worker rack-1: lost seq=7"),
            "{text}"
        );
        assert!(
            !text.contains("job_id") && !text.contains("worker=") && !text.contains("device="),
            "{text}"
        );
        // the text tests and scripts look for, whole at the end of its line
        assert!(
            lines[1].ends_with(
                ": workers on tcp://127.0.0.1:5556, API on http://127.0.0.1:8080/api/v0.2/"
            ),
            "{text}"
        );
        // a control character from a job never reaches the terminal as such
        assert!(!lines[2].contains('\x1b'), "{text}");
    }
}
