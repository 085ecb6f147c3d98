//! An XML-RPC codec: reads `<methodCall>` documents and writes `<methodResponse>` documents
//! (a value or a fault), for lavacli's endpoint ([`crate::rpc`]).
//!
//! The XML itself is read by `quick-xml` (a maintained, fast pull parser that checks
//! well-formedness and end tags); the XML-RPC layer on top is written here because the Rust
//! XML-RPC crates either pull an HTTP client and server of their own (`xmlrpc`, `dxr`) or do
//! not know `<nil/>`, which LAVA's server uses for `None` (Python's `allow_none`). The layer is
//! small: the value types of the spec plus `<nil/>` and `<i8>`.
//!
//! Hostile input gives an [`XmlRpcError`], never a panic: nesting is limited to
//! [`MAX_DEPTH`], and the body size is limited by the HTTP layer.

use base64::Engine as _;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt::Write as _;

/// The deepest nesting of arrays and structs read.
pub const MAX_DEPTH: usize = 64;

/// An XML-RPC value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    String(String),
    Double(f64),
    Base64(Vec<u8>),
    /// `<dateTime.iso8601>` as written (`20260701T12:00:00`).
    DateTime(String),
    Array(Vec<Value>),
    /// Members in order.
    Struct(Vec<(String, Value)>),
    Nil,
}

impl Value {
    /// A struct of `(name, value)` pairs.
    pub fn structure<const N: usize>(members: [(&str, Value); N]) -> Value {
        Value::Struct(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A string.
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A string, or nil for none.
    pub fn opt_str(s: Option<impl Into<String>>) -> Value {
        s.map_or(Value::Nil, |s| Value::String(s.into()))
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value's type name as XML-RPC spells it (for error messages).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Double(_) => "double",
            Value::Base64(_) => "base64",
            Value::DateTime(_) => "dateTime.iso8601",
            Value::Array(_) => "array",
            Value::Struct(_) => "struct",
            Value::Nil => "nil",
        }
    }
}

/// Why a request document is not an XML-RPC method call.
#[derive(Debug, thiserror::Error)]
pub enum XmlRpcError {
    #[error("the request is not UTF-8")]
    NotUtf8,
    #[error("invalid XML: {0}")]
    Xml(String),
    #[error("invalid XML-RPC: {0}")]
    Shape(String),
    #[error("values nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// A method call: the method's name and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: String,
    pub params: Vec<Value>,
}

/// One token of the document: element starts and ends and text (character data,
/// references and CDATA joined).
#[derive(Debug)]
enum Tok {
    Open(String),
    Close,
    Text(String),
}

fn tokens(text: &str) -> Result<Vec<Tok>, XmlRpcError> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    let xml = |e: quick_xml::Error| XmlRpcError::Xml(e.to_string());
    let mut out = Vec::new();
    let push_text = |out: &mut Vec<Tok>, s: &str| match out.last_mut() {
        Some(Tok::Text(t)) => t.push_str(s),
        _ => out.push(Tok::Text(s.to_string())),
    };
    let mut open = 0usize;
    loop {
        match reader.read_event().map_err(xml)? {
            Event::Start(e) => {
                open += 1;
                out.push(Tok::Open(e.name().0.to_string()));
            }
            Event::End(_) => {
                open = open
                    .checked_sub(1)
                    .ok_or_else(|| XmlRpcError::Xml("unbalanced end tag".into()))?;
                out.push(Tok::Close);
            }
            // expand_empty_elements: not reported
            Event::Empty(e) => {
                out.push(Tok::Open(e.name().0.to_string()));
                out.push(Tok::Close);
            }
            Event::Text(t) => push_text(&mut out, &t.xml10_content()),
            Event::CData(t) => push_text(&mut out, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(xml)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlRpcError::Xml(format!("unknown entity &{name};")))?
                            .to_string()
                    }
                };
                push_text(&mut out, &resolved);
            }
            Event::DocType(_) => {
                return Err(XmlRpcError::Xml("a DOCTYPE is not accepted".into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if open != 0 {
        return Err(XmlRpcError::Xml(
            "the document ends inside an element".into(),
        ));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

fn shape(why: impl Into<String>) -> XmlRpcError {
    XmlRpcError::Shape(why.into())
}

impl Parser {
    fn skip_ws(&mut self) {
        while let Some(Tok::Text(t)) = self.toks.get(self.pos) {
            if !t.trim().is_empty() {
                break;
            }
            self.pos += 1;
        }
    }

    /// The name of the next element (after blanks), if the next token starts one.
    fn peek_open(&mut self) -> Option<&str> {
        self.skip_ws();
        match self.toks.get(self.pos) {
            Some(Tok::Open(n)) => Some(n),
            _ => None,
        }
    }

    fn open(&mut self, name: &str) -> Result<(), XmlRpcError> {
        self.skip_ws();
        match self.toks.get(self.pos) {
            Some(Tok::Open(n)) if n == name => {
                self.pos += 1;
                Ok(())
            }
            other => Err(shape(format!(
                "expected <{name}>, found {}",
                describe(other)
            ))),
        }
    }

    fn close(&mut self, name: &str) -> Result<(), XmlRpcError> {
        self.skip_ws();
        match self.toks.get(self.pos) {
            Some(Tok::Close) => {
                self.pos += 1;
                Ok(())
            }
            other => Err(shape(format!(
                "expected </{name}>, found {}",
                describe(other)
            ))),
        }
    }

    /// The text before the next element or end tag ("" when there is none).
    fn text(&mut self) -> String {
        match self.toks.get(self.pos) {
            Some(Tok::Text(t)) => {
                let t = t.clone();
                self.pos += 1;
                t
            }
            _ => String::new(),
        }
    }

    /// A `<name>text</name>` element's text.
    fn leaf(&mut self, name: &str) -> Result<String, XmlRpcError> {
        self.open(name)?;
        let t = self.text();
        self.close(name)?;
        Ok(t)
    }

    fn value(&mut self, depth: usize) -> Result<Value, XmlRpcError> {
        if depth > MAX_DEPTH {
            return Err(XmlRpcError::TooDeep);
        }
        self.open("value")?;
        let text = self.text();
        if let Some(Tok::Close) = self.toks.get(self.pos) {
            // `<value>text</value>`: a string
            self.pos += 1;
            return Ok(Value::String(text));
        }
        if !text.trim().is_empty() {
            return Err(shape("text beside a typed value"));
        }
        let kind = match self.toks.get(self.pos) {
            Some(Tok::Open(n)) => n.clone(),
            other => {
                return Err(shape(format!(
                    "expected a value, found {}",
                    describe(other)
                )))
            }
        };
        self.pos += 1;
        let number = |t: &str| -> Result<i64, XmlRpcError> {
            t.trim()
                .parse()
                .map_err(|_| shape(format!("<{kind}> {t:?} is not an integer")))
        };
        let v = match kind.as_str() {
            "int" | "i4" | "i8" => Value::Int(number(&self.text())?),
            "boolean" => match self.text().trim() {
                "1" | "true" => Value::Bool(true),
                "0" | "false" => Value::Bool(false),
                t => return Err(shape(format!("<boolean> {t:?} is not 0 or 1"))),
            },
            "string" => Value::String(self.text()),
            "double" => {
                let t = self.text();
                Value::Double(
                    t.trim()
                        .parse()
                        .map_err(|_| shape(format!("<double> {t:?} is not a number")))?,
                )
            }
            "base64" => {
                let t: String = self.text().chars().filter(|c| !c.is_whitespace()).collect();
                Value::Base64(
                    base64::engine::general_purpose::STANDARD
                        .decode(t.as_bytes())
                        .map_err(|e| shape(format!("<base64>: {e}")))?,
                )
            }
            "dateTime.iso8601" => Value::DateTime(self.text().trim().to_string()),
            "nil" => Value::Nil,
            "array" => {
                self.open("data")?;
                let mut items = Vec::new();
                while self.peek_open() == Some("value") {
                    items.push(self.value(depth + 1)?);
                }
                self.close("data")?;
                Value::Array(items)
            }
            "struct" => {
                let mut members = Vec::new();
                while self.peek_open() == Some("member") {
                    self.open("member")?;
                    let name = self.leaf("name")?;
                    let v = self.value(depth + 1)?;
                    self.close("member")?;
                    members.push((name, v));
                }
                Value::Struct(members)
            }
            other => return Err(shape(format!("unknown value type <{other}>"))),
        };
        self.close(&kind)?;
        self.close("value")?;
        Ok(v)
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the document".into(),
        Some(Tok::Open(n)) => format!("<{n}>"),
        Some(Tok::Close) => "an end tag".into(),
        Some(Tok::Text(t)) => format!("text {:?}", t.chars().take(40).collect::<String>()),
    }
}

/// Reads a `<methodCall>` document.
pub fn parse_call(body: &[u8]) -> Result<Call, XmlRpcError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlRpcError::NotUtf8)?;
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
    };
    p.open("methodCall")?;
    let method = p.leaf("methodName")?.trim().to_string();
    if method.is_empty() {
        return Err(shape("an empty <methodName>"));
    }
    let mut params = Vec::new();
    if p.peek_open() == Some("params") {
        p.open("params")?;
        while p.peek_open() == Some("param") {
            p.open("param")?;
            params.push(p.value(0)?);
            p.close("param")?;
        }
        p.close("params")?;
    }
    p.close("methodCall")?;
    p.skip_ws();
    if p.pos != p.toks.len() {
        return Err(shape("content after </methodCall>"));
    }
    Ok(Call { method, params })
}

/// What a `<methodResponse>` carries: a value, or a fault's code and string.
pub type Reply = Result<Value, (i64, String)>;

/// Reads a `<methodResponse>` document (for clients and tests).
pub fn parse_response(body: &[u8]) -> Result<Reply, XmlRpcError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlRpcError::NotUtf8)?;
    let mut p = Parser {
        toks: tokens(text)?,
        pos: 0,
    };
    p.open("methodResponse")?;
    let reply = if p.peek_open() == Some("fault") {
        p.open("fault")?;
        let v = p.value(0)?;
        p.close("fault")?;
        let Value::Struct(members) = v else {
            return Err(shape("a fault that is not a struct"));
        };
        let field = |name: &str| members.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        match (field("faultCode"), field("faultString")) {
            (Some(Value::Int(code)), Some(Value::String(s))) => Err((*code, s.clone())),
            _ => return Err(shape("a fault without faultCode and faultString")),
        }
    } else {
        p.open("params")?;
        p.open("param")?;
        let v = p.value(0)?;
        p.close("param")?;
        p.close("params")?;
        Ok(v)
    };
    p.close("methodResponse")?;
    p.skip_ws();
    if p.pos != p.toks.len() {
        return Err(shape("content after </methodResponse>"));
    }
    Ok(reply)
}

/// A `<methodCall>` document (for clients and tests).
pub fn call(method: &str, params: &[Value]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    escape_into(&mut out, method);
    out.push_str("</methodName><params>");
    for v in params {
        out.push_str("<param>");
        write_value(&mut out, v);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out
}

/// Escapes text for XML; characters XML cannot carry become U+FFFD.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, v: &Value) {
    out.push_str("<value>");
    match v {
        Value::Int(i) if i32::try_from(*i).is_ok() => {
            let _ = write!(out, "<int>{i}</int>");
        }
        Value::Int(i) => {
            let _ = write!(out, "<i8>{i}</i8>");
        }
        Value::Bool(b) => {
            let _ = write!(out, "<boolean>{}</boolean>", u8::from(*b));
        }
        Value::String(s) => {
            out.push_str("<string>");
            escape_into(out, s);
            out.push_str("</string>");
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d:?}</double>");
        }
        Value::Base64(b) => {
            out.push_str("<base64>");
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
            out.push_str("</base64>");
        }
        Value::DateTime(t) => {
            out.push_str("<dateTime.iso8601>");
            escape_into(out, t);
            out.push_str("</dateTime.iso8601>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for i in items {
                write_value(out, i);
            }
            out.push_str("</data></array>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (k, v) in members {
                out.push_str("<member><name>");
                escape_into(out, k);
                out.push_str("</name>");
                write_value(out, v);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Nil => out.push_str("<nil/>"),
    }
    out.push_str("</value>");
}

const HEADER: &str = "<?xml version=\"1.0\"?>\n<methodResponse>";

/// A `<methodResponse>` with one value.
pub fn response(v: &Value) -> String {
    let mut out = String::from(HEADER);
    out.push_str("<params><param>");
    write_value(&mut out, v);
    out.push_str("</param></params></methodResponse>\n");
    out
}

/// A `<methodResponse>` with a fault.
pub fn fault(code: i32, message: &str) -> String {
    let mut out = String::from(HEADER);
    out.push_str("<fault>");
    write_value(
        &mut out,
        &Value::structure([
            ("faultCode", Value::Int(i64::from(code))),
            ("faultString", Value::str(message)),
        ]),
    );
    out.push_str("</fault></methodResponse>\n");
    out
}

/// The XML-RPC `dateTime.iso8601` form of milliseconds since the epoch, in UTC
/// (`20260701T12:00:00`, what Python's `xmlrpc.client` writes and reads).
pub fn datetime(ms: u64) -> Value {
    // rfc3339 is `2026-07-01T12:00:00.000Z`
    let t = crate::http::rfc3339(ms);
    let (date, time) = t.split_once('T').unwrap_or((&t, ""));
    let time = time.get(..8).unwrap_or(time);
    Value::DateTime(format!("{}T{time}", date.replace('-', "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_python_writes() {
        let body = b"<?xml version='1.0'?>\n<methodCall>\n<methodName>scheduler.jobs.logs</methodName>\n<params>\n<param>\n<value><string>12</string></value>\n</param>\n<param>\n<value><int>0</int></value>\n</param>\n<param>\n<value><nil/></value></param>\n<param><value>a &amp; b&#65;</value></param>\n<param><value><array><data>\n<value><boolean>1</boolean></value>\n<value><struct><member><name>k</name><value><double>1.5</double></value></member></struct></value>\n</data></array></value></param><param><value><base64>aGk=\n</base64></value></param><param><value><string>  spaced  </string></value></param>\n</params>\n</methodCall>\n";
        let call = parse_call(body).expect("a call");
        assert_eq!(call.method, "scheduler.jobs.logs");
        assert_eq!(
            call.params,
            vec![
                Value::str("12"),
                Value::Int(0),
                Value::Nil,
                Value::str("a & bA"),
                Value::Array(vec![
                    Value::Bool(true),
                    Value::Struct(vec![("k".into(), Value::Double(1.5))])
                ]),
                Value::Base64(b"hi".to_vec()),
                Value::str("  spaced  "),
            ]
        );
    }

    #[test]
    fn no_params_and_empty_string() {
        let call = parse_call(
            b"<methodCall><methodName>system.version</methodName><params/></methodCall>",
        )
        .expect("a call");
        assert_eq!(call.method, "system.version");
        assert!(call.params.is_empty());
        let call = parse_call(
            b"<methodCall><methodName>x</methodName><params><param><value><string/></value></param><param><value></value></param></params></methodCall>",
        )
        .expect("a call");
        assert_eq!(call.params, vec![Value::str(""), Value::str("")]);
    }

    #[test]
    fn bad_documents_are_errors() {
        for bad in [
            &b""[..],
            b"<methodCall>",
            b"<methodCall><methodName>x</methodName></methodCall><x/>",
            b"<methodCall><methodName>x</methodName><params><param><value><int>z</int></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><foo/></value></param></params></methodCall>",
            b"<a></b>",
            b"<methodCall><methodName>&bogus;</methodName></methodCall>",
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodCall><methodName>x</methodName></methodCall>",
            b"\xff\xfe",
        ] {
            assert!(parse_call(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!(
            "<methodCall><methodName>x</methodName><params><param>{}{}</param></params></methodCall>",
            "<value><array><data>".repeat(200),
            "</data></array></value>".repeat(200)
        );
        assert!(matches!(
            parse_call(deep.as_bytes()),
            Err(XmlRpcError::TooDeep)
        ));
    }

    #[test]
    fn writes_responses_that_read_back() {
        let v = Value::structure([
            ("id", Value::Int(7)),
            ("big", Value::Int(1 << 40)),
            ("s", Value::str("<a & b>\r\u{1}")),
            ("none", Value::Nil),
            ("t", datetime(951_782_400_123)),
            (
                "l",
                Value::Array(vec![Value::Bool(false), Value::Base64(vec![0, 1])]),
            ),
        ]);
        let xml = response(&v);
        assert!(xml.contains("<dateTime.iso8601>20000229T00:00:00</dateTime.iso8601>"));
        assert!(xml.contains("<i8>1099511627776</i8>"));
        // read it back through the call reader
        let body = xml
            .replace("<methodResponse>", "<methodCall><methodName>r</methodName>")
            .replace("</methodResponse>", "</methodCall>");
        let back = parse_call(body.as_bytes()).expect("reads back");
        let Value::Struct(m) = &back.params[0] else {
            panic!("not a struct")
        };
        assert_eq!(m[2].1, Value::str("<a & b>\r\u{fffd}"));
        assert_eq!(m[3].1, Value::Nil);
        let f = fault(404, "no job 3");
        assert!(f.contains("<name>faultCode</name><value><int>404</int></value>"));
        assert_eq!(
            parse_response(f.as_bytes()).expect("a fault"),
            Err((404, "no job 3".into()))
        );
        assert!(matches!(
            parse_response(xml.as_bytes()),
            Ok(Ok(Value::Struct(m))) if m.len() == 6
        ));
        let c = call("m.x", &[Value::Int(1), Value::Nil]);
        assert_eq!(
            parse_call(c.as_bytes()).expect("a call").params,
            vec![Value::Int(1), Value::Nil]
        );
    }
}
