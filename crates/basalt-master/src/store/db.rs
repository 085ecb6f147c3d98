//! The store's two databases behind one small interface: SQL written once with `?N`
//! placeholders (rewritten to `$N` for PostgreSQL), owned [`Value`]s in and [`Row`]s out.
//!
//! PostgreSQL's client runs on a thread of its own ([`PgClient`]): the sync `postgres` crate
//! blocks on a tokio runtime of its own, which panics on a thread that already drives one, and
//! the store is called from the engine's and the API's tokio tasks. The hop to that thread
//! (two channel messages, ~20 µs) is small next to a query's round trip to the server (~80 µs
//! on the same host); statements are prepared once per connection.

use super::StoreError;
use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// A value bound to a query or read from a row: what the store's columns hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u8> for Value {
    fn from(v: u8) -> Value {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    fn describe(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Int(i) => format!("integer {i}"),
            Value::Text(_) => "text".into(),
        }
    }
}

/// The arguments of a query: `args![a, b]` is `&[Value::from(a), Value::from(b)]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::db::Value::from($v)),*][..]
    };
}
pub(super) use args;

/// A row of a query's result, read by column index.
#[derive(Debug)]
pub(super) struct Row(Vec<Value>);

impl Row {
    fn column(&self, column: usize) -> Result<&Value, StoreError> {
        self.0.get(column).ok_or(StoreError::Column {
            column,
            expected: "a column",
            found: "no such column".into(),
        })
    }

    fn wrong(&self, column: usize, expected: &'static str) -> StoreError {
        StoreError::Column {
            column,
            expected,
            found: self
                .0
                .get(column)
                .map_or("no such column".into(), Value::describe),
        }
    }

    pub(super) fn opt_int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        match self.column(column)? {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(*i)),
            Value::Text(_) => Err(self.wrong(column, "an integer")),
        }
    }

    pub(super) fn int(&self, column: usize) -> Result<i64, StoreError> {
        self.opt_int(column)?
            .ok_or_else(|| self.wrong(column, "an integer"))
    }

    /// A time or an id: not negative.
    pub(super) fn uint(&self, column: usize) -> Result<u64, StoreError> {
        self.opt_uint(column)?
            .ok_or_else(|| self.wrong(column, "a non-negative integer"))
    }

    pub(super) fn opt_uint(&self, column: usize) -> Result<Option<u64>, StoreError> {
        self.opt_int(column)?
            .map(|i| u64::try_from(i).map_err(|_| self.wrong(column, "a non-negative integer")))
            .transpose()
    }

    /// A state, health or priority code.
    pub(super) fn code(&self, column: usize) -> Result<u8, StoreError> {
        u8::try_from(self.int(column)?).map_err(|_| self.wrong(column, "a code (0 to 255)"))
    }

    pub(super) fn bool(&self, column: usize) -> Result<bool, StoreError> {
        Ok(self.int(column)? != 0)
    }

    pub(super) fn opt_text(&self, column: usize) -> Result<Option<String>, StoreError> {
        match self.column(column)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Int(_) => Err(self.wrong(column, "text")),
        }
    }

    pub(super) fn text(&self, column: usize) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| self.wrong(column, "text"))
    }
}

/// The connection: SQLite's, or the thread that holds PostgreSQL's.
pub(super) enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(PgClient),
}

impl Backend {
    pub(super) fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(super) fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        match self {
            Backend::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                Ok(st.execute(rusqlite::params_from_iter(args))? as u64)
            }
            Backend::Postgres(pg) => match pg.call(Request::Execute(sql.into(), args.to_vec()))? {
                Reply::Count(n) => Ok(n),
                _ => Err(StoreError::Disconnected),
            },
        }
    }

    /// Runs a query; returns its rows.
    pub(super) fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self {
            Backend::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(args))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let values = (0..n)
                        .map(|i| sqlite_value(i, r.get_ref(i)?))
                        .collect::<Result<_, StoreError>>()?;
                    out.push(Row(values));
                }
                Ok(out)
            }
            Backend::Postgres(pg) => match pg.call(Request::Query(sql.into(), args.to_vec()))? {
                Reply::Rows(rows) => Ok(rows),
                _ => Err(StoreError::Disconnected),
            },
        }
    }

    /// The first row of a query, if any.
    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        args: &[Value],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Runs statements without arguments (a migration).
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Backend::Postgres(pg) => pg.call(Request::Batch(sql.into())).map(drop),
        }
    }

    /// Starts a transaction; SQLite's takes the write lock at once (all of the store's
    /// transactions write), so that two writers wait for each other instead of failing.
    pub(super) fn begin(&mut self) -> Result<(), StoreError> {
        self.control(match self {
            Backend::Sqlite(_) => "BEGIN IMMEDIATE",
            Backend::Postgres(_) => "BEGIN",
        })
    }

    pub(super) fn commit(&mut self) -> Result<(), StoreError> {
        self.control("COMMIT")
    }

    pub(super) fn rollback(&mut self) -> Result<(), StoreError> {
        self.control("ROLLBACK")
    }

    fn control(&mut self, sql: &'static str) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Backend::Postgres(pg) => pg.call(Request::Control(sql)).map(drop),
        }
    }
}

fn sqlite_value(column: usize, v: rusqlite::types::ValueRef<'_>) -> Result<Value, StoreError> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Ok(Value::Null),
        ValueRef::Integer(i) => Ok(Value::Int(i)),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Ok(Value::Text(s.to_string())),
            Err(_) => Err(StoreError::Column {
                column,
                expected: "UTF-8 text",
                found: "other bytes".into(),
            }),
        },
        ValueRef::Real(r) => Err(StoreError::Column {
            column,
            expected: "an integer or text",
            found: format!("real {r}"),
        }),
        ValueRef::Blob(_) => Err(StoreError::Column {
            column,
            expected: "an integer or text",
            found: "a blob".into(),
        }),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

// ---- PostgreSQL ------------------------------------------------------------------------------

use postgres::types::{FromSql, IsNull, ToSql, Type};

/// Integers go to whichever integer (or boolean) type the server inferred for the
/// parameter, so that one SQL text with untyped `?N` serves both databases.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer for a parameter of type {ty}").into()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                    s.as_str().to_sql(ty, out)
                }
                _ => Err(format!("text for a parameter of type {ty}").into()),
            },
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
        )
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            _ => Value::Text(<&str>::from_sql(ty, raw)?.to_string()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        <Value as ToSql>::accepts(ty)
    }
}

/// What the store asks of the PostgreSQL thread.
enum Request {
    Execute(String, Vec<Value>),
    Query(String, Vec<Value>),
    /// Statements without arguments; they may change the schema (prepared statements are
    /// dropped).
    Batch(String),
    /// BEGIN, COMMIT, ROLLBACK.
    Control(&'static str),
}

enum Reply {
    Count(u64),
    Rows(Vec<Row>),
    Done,
}

/// A `postgres::Client` on a thread of its own: requests in, replies out, one at a time (the
/// store's mutex serialises the callers). Dropping it closes the connection and joins the
/// thread.
pub(super) struct PgClient {
    requests: Option<mpsc::Sender<Request>>,
    replies: mpsc::Receiver<Result<Reply, postgres::Error>>,
    thread: Option<JoinHandle<()>>,
}

impl PgClient {
    /// Connects (on the new thread) to `config`'s server.
    pub(super) fn connect(config: postgres::Config) -> Result<PgClient, ConnectError> {
        let (requests, requests_rx) = mpsc::channel();
        let (replies_tx, replies) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("basalt-store-pg".into())
            .spawn(move || match config.connect(postgres::NoTls) {
                Ok(client) => {
                    if replies_tx.send(Ok(Reply::Done)).is_ok() {
                        serve(&config, client, requests_rx, replies_tx);
                    }
                }
                Err(e) => {
                    let _ = replies_tx.send(Err(e));
                }
            })
            .map_err(ConnectError::Thread)?;
        let client = PgClient {
            requests: Some(requests),
            replies,
            thread: Some(thread),
        };
        match client.replies.recv() {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(ConnectError::Postgres(e)),
            Err(_) => Err(ConnectError::Thread(std::io::Error::other(
                "the connection's thread stopped",
            ))),
        }
    }

    fn call(&mut self, request: Request) -> Result<Reply, StoreError> {
        let requests = self.requests.as_ref().ok_or(StoreError::Disconnected)?;
        requests
            .send(request)
            .map_err(|_| StoreError::Disconnected)?;
        match self.replies.recv() {
            Ok(reply) => Ok(reply?),
            Err(_) => Err(StoreError::Disconnected),
        }
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        // the thread ends when its requests end
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why [`PgClient::connect`] failed.
pub(super) enum ConnectError {
    Postgres(postgres::Error),
    Thread(std::io::Error),
}

/// The PostgreSQL thread: runs requests until the store drops its end. A connection found
/// lost (the server restarted) is made again before the next request outside a transaction;
/// the request that met the loss fails and is not retried (it may have been applied).
fn serve(
    config: &postgres::Config,
    mut client: postgres::Client,
    requests: mpsc::Receiver<Request>,
    replies: mpsc::Sender<Result<Reply, postgres::Error>>,
) {
    let mut statements = HashMap::new();
    let mut in_transaction = false;
    // after a failure, whether the connection still works is asked once (a round trip)
    let mut failed = false;
    for request in requests {
        let lost = !in_transaction
            && (client.is_closed()
                || (failed && client.is_valid(std::time::Duration::from_secs(5)).is_err()));
        let reply = if lost {
            config.connect(postgres::NoTls).map(|c| {
                client = c;
                statements.clear();
            })
        } else {
            Ok(())
        };
        let control = match &request {
            Request::Control(sql) => Some(*sql),
            _ => None,
        };
        let reply = reply.and_then(|()| run(&mut client, &mut statements, request));
        match control {
            Some("BEGIN") => in_transaction = reply.is_ok(),
            Some(_) => in_transaction = false,
            None => {}
        }
        failed = reply.is_err();
        if replies.send(reply).is_err() {
            break;
        }
    }
}

fn run(
    client: &mut postgres::Client,
    statements: &mut HashMap<String, postgres::Statement>,
    request: Request,
) -> Result<Reply, postgres::Error> {
    match request {
        Request::Execute(sql, args) => {
            let st = prepared(client, statements, sql)?;
            Ok(Reply::Count(client.execute(&st, &refs(&args))?))
        }
        Request::Query(sql, args) => {
            let st = prepared(client, statements, sql)?;
            let rows = client.query(&st, &refs(&args))?;
            let rows = rows
                .iter()
                .map(|r| (0..r.len()).map(|i| r.try_get(i)).collect())
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Reply::Rows(rows.into_iter().map(Row).collect()))
        }
        Request::Batch(sql) => {
            statements.clear();
            client.batch_execute(&sql)?;
            Ok(Reply::Done)
        }
        Request::Control(sql) => {
            client.batch_execute(sql)?;
            Ok(Reply::Done)
        }
    }
}

/// The statement prepared for `sql` on this connection (prepared once).
fn prepared(
    client: &mut postgres::Client,
    statements: &mut HashMap<String, postgres::Statement>,
    sql: String,
) -> Result<postgres::Statement, postgres::Error> {
    if let Some(st) = statements.get(&sql) {
        return Ok(st.clone());
    }
    let st = client.prepare(&dollars(&sql))?;
    statements.insert(sql, st.clone());
    Ok(st)
}

fn refs(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N` (the store's SQL has no `?` in literals).
pub(super) fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// `url` with its password (in the user info or a `password=` parameter) as `***`.
pub(super) fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k == "password" => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            dollars("UPDATE t SET a = ?2 WHERE b = ?1 AND c = '?'"),
            "UPDATE t SET a = $2 WHERE b = $1 AND c = '?'"
        );
    }

    #[test]
    fn passwords_are_masked() {
        for (url, masked) in [
            (
                "postgres://basalt:s3cret@db:5432/basalt",
                "postgres://basalt:***@db:5432/basalt",
            ),
            (
                "postgresql://u:p@w@host?sslmode=disable&password=x",
                "postgresql://u:***@host?sslmode=disable&password=***",
            ),
            ("postgres://basalt@db/basalt", "postgres://basalt@db/basalt"),
            ("postgres://db", "postgres://db"),
        ] {
            assert_eq!(mask_password(url), masked);
        }
    }

    #[test]
    fn rows_refuse_what_their_columns_do_not_hold() {
        let r = Row(vec![Value::Null, Value::Int(-1), Value::Text("x".into())]);
        assert_eq!(r.opt_int(0).ok(), Some(None));
        assert!(matches!(
            r.int(0),
            Err(StoreError::Column { column: 0, .. })
        ));
        assert!(r.uint(1).is_err());
        assert!(r.code(1).is_err());
        assert!(r.int(2).is_err());
        assert!(r.text(1).is_err());
        assert!(r.text(3).is_err());
        assert_eq!(r.text(2).ok().as_deref(), Some("x"));
    }
}
