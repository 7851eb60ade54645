//! A pure subset of Go's text/template, enough for docker's `--format` strings, evaluated over
//! JSON values.
//!
//! Guarantees:
//! - supported: text, `{{.A.B}}`, `{{.}}`, `{{$}}`, `{{$v}}`, string/number/bool literals,
//!   pipelines with `|`, parenthesised sub-pipelines, `{{if}}/{{else if}}/{{else}}/{{end}}`,
//!   `{{range}}` (with `$i, $v :=` and `{{else}}`), `{{with}}`, trim markers `{{-`/`-}}`,
//!   and the functions docker offers: `json index len eq ne lt le gt ge not and or print
//!   printf println lower upper title join split pad truncate`;
//! - values print as Go prints decoded JSON: maps as `map[k:v]` (keys sorted), lists as
//!   `[a b]`, integers without a fraction, a missing key as `<no value>`, null as `<nil>`;
//! - a malformed template is a [`TemplateError`] at parse time, never a panic; evaluation
//!   errors (calling a non-function, bad index) are errors too.

use serde_json::Value;
use std::fmt;

/// A template that failed to parse or execute; the text is docker's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

fn parse_err(msg: impl fmt::Display) -> TemplateError {
    TemplateError(format!("template parsing error: template: :1: {msg}"))
}

fn exec_err(msg: impl fmt::Display) -> TemplateError {
    TemplateError(format!("template: :1: executing \"\": {msg}"))
}

/// A parsed template, ready to render many values.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Output(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        vars: Vec<String>,
        over: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        value: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// `cmd | cmd | cmd`; each command's result is the last argument of the next.
#[derive(Debug, Clone)]
struct Pipeline {
    cmds: Vec<Vec<Term>>,
}

#[derive(Debug, Clone)]
enum Term {
    /// `.A.B` (empty path is `.`).
    Field(Vec<String>),
    /// `$name.A.B` (`$` alone is the root).
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    Func(String),
    Sub(Pipeline, Vec<String>),
}

/// The value of an expression: JSON, or "no such key" which Go prints as `<no value>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Json(Value),
    Missing,
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Missing => false,
            Val::Json(v) => match v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
            },
        }
    }

    fn json(&self) -> Value {
        match self {
            Val::Missing => Value::Null,
            Val::Json(v) => v.clone(),
        }
    }
}

const FUNCS: &[&str] = &[
    "json", "index", "len", "eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or", "print", "printf",
    "println", "lower", "upper", "title", "join", "split", "pad", "truncate",
];

impl Template {
    /// Parse a template; `\t` and `\n` written literally (as a shell passes them) become tab and
    /// newline, as docker does.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        let pieces = lex(&text)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&pieces, &mut pos)?;
        if let Some(kw) = end {
            return Err(parse_err(format!("unexpected {{{{{kw}}}}}")));
        }
        Ok(Template { nodes })
    }

    /// Render against `dot`.
    pub fn render(&self, dot: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut vars = vec![("$".to_string(), Val::Json(dot.clone()))];
        exec_nodes(&self.nodes, &Val::Json(dot.clone()), &mut vars, &mut out)?;
        Ok(out)
    }
}

/// A lexed piece: literal text or the inside of one action.
#[derive(Debug)]
enum Piece {
    Text(String),
    Action(String),
}

fn lex(text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        let mut inner_start = open + 2;
        if rest[inner_start..].starts_with("- ") || rest[inner_start..].starts_with("-\t") {
            before = before.trim_end();
            inner_start += 1;
        }
        let close_rel = find_close(&rest[inner_start..]).ok_or_else(|| parse_err("unclosed action"))?;
        let mut inner = &rest[inner_start..inner_start + close_rel];
        let mut after = inner_start + close_rel + 2;
        let mut trim_after = false;
        if inner.ends_with(" -") || inner.ends_with("\t-") {
            inner = &inner[..inner.len() - 1];
            trim_after = true;
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_string()));
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            pieces.push(Piece::Action(inner.to_string()));
        }
        if trim_after {
            let skipped = rest[after..].len() - rest[after..].trim_start().len();
            after += skipped;
        }
        rest = &rest[after..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// Position of the `}}` closing an action, skipping over string literals.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => {
                if b == b'"' || b == b'`' {
                    quote = Some(b);
                } else if b == b'}' && bytes.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Parse nodes until `{{end}}` / `{{else ...}}` (returned as the terminator text) or the end.
fn parse_nodes(pieces: &[Piece], pos: &mut usize) -> Result<(Vec<Node>, Option<String>), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < pieces.len() {
        let piece = &pieces[*pos];
        *pos += 1;
        match piece {
            Piece::Text(t) => nodes.push(Node::Text(t.clone())),
            Piece::Action(a) => {
                let (word, rest) = split_keyword(a);
                match word {
                    "end" => return Ok((nodes, Some("end".into()))),
                    "else" => return Ok((nodes, Some(a.clone()))),
                    "if" => {
                        let cond = parse_pipeline(rest)?;
                        let (then, otherwise) = parse_branches(pieces, pos, "if")?;
                        nodes.push(Node::If {
                            cond,
                            then,
                            otherwise,
                        });
                    }
                    "range" => {
                        let (vars, expr) = split_decl(rest)?;
                        let over = parse_pipeline(expr)?;
                        let (body, otherwise) = parse_branches(pieces, pos, "range")?;
                        nodes.push(Node::Range {
                            vars,
                            over,
                            body,
                            otherwise,
                        });
                    }
                    "with" => {
                        let value = parse_pipeline(rest)?;
                        let (body, otherwise) = parse_branches(pieces, pos, "with")?;
                        nodes.push(Node::With {
                            value,
                            body,
                            otherwise,
                        });
                    }
                    "define" | "template" | "block" => {
                        return Err(parse_err(format!("{{{{{word}}}}} is not supported")));
                    }
                    _ => nodes.push(Node::Output(parse_pipeline(a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

/// The body after `if/range/with` up to `{{end}}`, and the else branch (where `{{else if x}}`
/// nests as an if inside the else branch).
fn parse_branches(
    pieces: &[Piece],
    pos: &mut usize,
    what: &str,
) -> Result<(Vec<Node>, Vec<Node>), TemplateError> {
    let (body, term) = parse_nodes(pieces, pos)?;
    match term.as_deref() {
        None => Err(parse_err(format!(
            "unexpected EOF: missing {{{{end}}}} for {{{{{what}}}}}"
        ))),
        Some("end") => Ok((body, Vec::new())),
        Some(else_action) => {
            let rest = split_keyword(else_action).1;
            if rest.is_empty() {
                let (otherwise, term) = parse_nodes(pieces, pos)?;
                if term.as_deref() != Some("end") {
                    return Err(parse_err(format!(
                        "missing {{{{end}}}} after {{{{else}}}} in {{{{{what}}}}}"
                    )));
                }
                Ok((body, otherwise))
            } else {
                let (kw, cond_text) = split_keyword(rest);
                if kw != "if" {
                    return Err(parse_err(format!("unexpected {{{{else {rest}}}}}")));
                }
                let cond = parse_pipeline(cond_text)?;
                let (then, otherwise) = parse_branches(pieces, pos, what)?;
                Ok((
                    body,
                    vec![Node::If {
                        cond,
                        then,
                        otherwise,
                    }],
                ))
            }
        }
    }
}

fn split_keyword(action: &str) -> (&str, &str) {
    let action = action.trim();
    match action.find(|c: char| c.is_whitespace()) {
        Some(i) => (&action[..i], action[i..].trim()),
        None => (action, ""),
    }
}

/// `$i, $v := .List` → (["$i", "$v"], ".List"); without `:=` no variables.
fn split_decl(text: &str) -> Result<(Vec<String>, &str), TemplateError> {
    if let Some((lhs, rhs)) = text.split_once(":=") {
        let vars: Vec<String> = lhs.split(',').map(|v| v.trim().to_string()).collect();
        if vars.len() > 2 || vars.iter().any(|v| !v.starts_with('$') || v.len() < 2) {
            return Err(parse_err(format!("bad variable declaration {lhs:?}")));
        }
        Ok((vars, rhs.trim()))
    } else {
        Ok((Vec::new(), text))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Pipe,
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            toks.push(Tok::Pipe);
            i += 1;
        } else if c == '(' {
            toks.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            toks.push(Tok::Close);
            i += 1;
            // `(...).Field` keeps its field chain as a following word.
            if i < chars.len() && chars[i] == '.' {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"|()".contains(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Word(chars[start..i].iter().collect()));
            }
        } else if c == '"' {
            let mut out = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(parse_err("unterminated quoted string")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let e = chars
                            .get(i + 1)
                            .ok_or_else(|| parse_err("unterminated quoted string"))?;
                        out.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some(ch) => {
                        out.push(*ch);
                        i += 1;
                    }
                }
            }
            toks.push(Tok::Str(out));
        } else if c == '`' {
            let start = i + 1;
            let end = chars[start..]
                .iter()
                .position(|&ch| ch == '`')
                .ok_or_else(|| parse_err("unterminated raw quoted string"))?;
            toks.push(Tok::Str(chars[start..start + end].iter().collect()));
            i = start + end + 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"|()\"".contains(chars[i]) {
                i += 1;
            }
            toks.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(toks)
}

fn parse_pipeline(text: &str) -> Result<Pipeline, TemplateError> {
    let toks = tokenize(text)?;
    let mut pos = 0;
    let p = parse_pipeline_toks(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(parse_err(format!("unexpected {:?} in command", toks[pos])));
    }
    Ok(p)
}

fn parse_pipeline_toks(toks: &[Tok], pos: &mut usize) -> Result<Pipeline, TemplateError> {
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while *pos < toks.len() {
        match &toks[*pos] {
            Tok::Close => break,
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err(parse_err("missing command before |"));
                }
                cmds.push(std::mem::take(&mut cmd));
                *pos += 1;
            }
            Tok::Open => {
                *pos += 1;
                let inner = parse_pipeline_toks(toks, pos)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err(parse_err("unclosed left paren"));
                }
                *pos += 1;
                let mut path = Vec::new();
                if let Some(Tok::Word(w)) = toks.get(*pos) {
                    if w.starts_with('.') {
                        path = field_path(w)?;
                        *pos += 1;
                    }
                }
                cmd.push(Term::Sub(inner, path));
            }
            Tok::Str(s) => {
                cmd.push(Term::Str(s.clone()));
                *pos += 1;
            }
            Tok::Word(w) => {
                cmd.push(parse_word(w)?);
                *pos += 1;
            }
        }
    }
    if cmd.is_empty() {
        return Err(parse_err(if cmds.is_empty() {
            "missing value for command"
        } else {
            "missing command after |"
        }));
    }
    cmds.push(cmd);
    Ok(Pipeline { cmds })
}

fn field_path(w: &str) -> Result<Vec<String>, TemplateError> {
    if w == "." {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = w[1..].split('.').map(str::to_string).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        return Err(parse_err(format!("bad field name {w:?}")));
    }
    Ok(parts)
}

fn parse_word(w: &str) -> Result<Term, TemplateError> {
    if w.starts_with('.') {
        return Ok(Term::Field(field_path(w)?));
    }
    if let Some(rest) = w.strip_prefix('$') {
        let (name, path) = match rest.find('.') {
            Some(i) => (&rest[..i], field_path(&rest[i..])?),
            None => (rest, Vec::new()),
        };
        return Ok(Term::Var(format!("${name}"), path));
    }
    match w {
        "true" => return Ok(Term::Bool(true)),
        "false" => return Ok(Term::Bool(false)),
        "nil" => return Ok(Term::Nil),
        _ => {}
    }
    if let Ok(n) = w.parse::<f64>() {
        return Ok(Term::Num(n));
    }
    if FUNCS.contains(&w) {
        return Ok(Term::Func(w.to_string()));
    }
    Err(parse_err(format!("function {w:?} not defined")))
}

type Vars = Vec<(String, Val)>;

fn exec_nodes(nodes: &[Node], dot: &Val, vars: &mut Vars, out: &mut String) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Output(p) => {
                let v = eval_pipeline(p, dot, vars)?;
                out.push_str(&print_val(&v));
            }
            Node::If {
                cond,
                then,
                otherwise,
            } => {
                let v = eval_pipeline(cond, dot, vars)?;
                let branch = if v.truthy() { then } else { otherwise };
                exec_nodes(branch, dot, vars, out)?;
            }
            Node::With {
                value,
                body,
                otherwise,
            } => {
                let v = eval_pipeline(value, dot, vars)?;
                if v.truthy() {
                    exec_nodes(body, &v, vars, out)?;
                } else {
                    exec_nodes(otherwise, dot, vars, out)?;
                }
            }
            Node::Range {
                vars: names,
                over,
                body,
                otherwise,
            } => {
                let v = eval_pipeline(over, dot, vars)?;
                let items: Vec<(Value, Value)> = match v.json() {
                    Value::Array(a) => a
                        .into_iter()
                        .enumerate()
                        .map(|(i, x)| (Value::from(i), x))
                        .collect(),
                    Value::Object(o) => o.into_iter().map(|(k, x)| (Value::String(k), x)).collect(),
                    Value::Null => Vec::new(),
                    Value::Number(n) => match n.as_u64() {
                        Some(count) => (0..count).map(|i| (Value::from(i), Value::from(i))).collect(),
                        None => return Err(exec_err(format!("range can't iterate over {n}"))),
                    },
                    other => {
                        return Err(exec_err(format!(
                            "range can't iterate over {}",
                            print_json(&other)
                        )))
                    }
                };
                if items.is_empty() {
                    exec_nodes(otherwise, dot, vars, out)?;
                }
                for (key, item) in items {
                    let mark = vars.len();
                    match names.as_slice() {
                        [v] => vars.push((v.clone(), Val::Json(item.clone()))),
                        [k, v] => {
                            vars.push((k.clone(), Val::Json(key)));
                            vars.push((v.clone(), Val::Json(item.clone())));
                        }
                        _ => {}
                    }
                    let r = exec_nodes(body, &Val::Json(item), vars, out);
                    vars.truncate(mark);
                    r?;
                }
            }
        }
    }
    Ok(())
}

fn lookup(mut v: Val, path: &[String]) -> Result<Val, TemplateError> {
    for name in path {
        v = match v {
            Val::Json(Value::Object(mut o)) => match o.remove(name) {
                Some(x) => Val::Json(x),
                None => Val::Missing,
            },
            // Go: a field of a nil value is nil; of a missing key it is missing.
            Val::Json(Value::Null) => Val::Json(Value::Null),
            Val::Missing => Val::Missing,
            Val::Json(other) => {
                return Err(exec_err(format!(
                    "can't evaluate field {name} in type {}",
                    type_name(&other)
                )));
            }
        };
    }
    Ok(v)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn eval_pipeline(p: &Pipeline, dot: &Val, vars: &Vars) -> Result<Val, TemplateError> {
    let mut prev: Option<Val> = None;
    for cmd in &p.cmds {
        prev = Some(eval_command(cmd, dot, vars, prev)?);
    }
    Ok(prev.unwrap_or(Val::Missing))
}

fn eval_term(t: &Term, dot: &Val, vars: &Vars) -> Result<Val, TemplateError> {
    Ok(match t {
        Term::Field(path) => lookup(dot.clone(), path)?,
        Term::Var(name, path) => {
            let v = vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| parse_err(format!("undefined variable {name:?}")))?;
            lookup(v, path)?
        }
        Term::Str(s) => Val::Json(Value::String(s.clone())),
        Term::Num(n) => Val::Json(number(*n)),
        Term::Bool(b) => Val::Json(Value::Bool(*b)),
        Term::Nil => Val::Json(Value::Null),
        Term::Func(name) => call(name, Vec::new())?,
        Term::Sub(p, path) => lookup(eval_pipeline(p, dot, vars)?, path)?,
    })
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

fn eval_command(cmd: &[Term], dot: &Val, vars: &Vars, piped: Option<Val>) -> Result<Val, TemplateError> {
    // A command has at least one term: the parser rejects empty commands.
    let first = &cmd[0];
    match first {
        Term::Func(name) => {
            let mut args = cmd[1..]
                .iter()
                .map(|t| eval_term(t, dot, vars))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(p) = piped {
                args.push(p);
            }
            call(name, args)
        }
        // `.Label "key"`: docker's ps/images rows offer this as a method.
        Term::Field(path) if path.len() == 1 && path[0] == "Label" && cmd.len() == 2 => {
            let key = print_val(&eval_term(&cmd[1], dot, vars)?);
            Ok(label_value(dot, &key))
        }
        _ => {
            if cmd.len() > 1 || piped.is_some() {
                return Err(exec_err("can't give argument to non-function"));
            }
            eval_term(first, dot, vars)
        }
    }
}

/// A label from `.Labels`, which is either an object or docker's `k=v,k2=v2` text.
fn label_value(dot: &Val, key: &str) -> Val {
    match dot {
        Val::Json(Value::Object(o)) => match o.get("Labels") {
            Some(Value::Object(m)) => m.get(key).cloned().map(Val::Json).unwrap_or(Val::Json("".into())),
            Some(Value::String(s)) => {
                let found = s
                    .split(',')
                    .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v));
                Val::Json(Value::String(found.unwrap_or("").to_string()))
            }
            _ => Val::Json("".into()),
        },
        _ => Val::Json("".into()),
    }
}

fn want_args(name: &str, args: &[Val], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return Err(exec_err(format!(
            "error calling {name}: wrong number of args: want {n} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn as_str(v: &Val) -> String {
    print_val(v)
}

fn compare(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a.json(), b.json()) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

fn call(name: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
    let s = |v: String| Ok(Val::Json(Value::String(v)));
    match name {
        "json" => {
            want_args(name, &args, 1)?;
            s(serde_json::to_string(&args[0].json()).unwrap_or_default())
        }
        "len" => {
            want_args(name, &args, 1)?;
            let n = match args[0].json() {
                Value::String(x) => x.len(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::Null => 0,
                other => {
                    return Err(exec_err(format!(
                        "error calling len: len of {}",
                        type_name(&other)
                    )))
                }
            };
            Ok(Val::Json(Value::from(n)))
        }
        "index" => {
            let (first, keys) = args
                .split_first()
                .ok_or_else(|| exec_err("index: missing argument"))?;
            let mut cur = first.clone();
            for k in keys {
                cur = match (cur.json(), k.json()) {
                    (Value::Object(mut o), key) => {
                        let key = match key {
                            Value::String(x) => x,
                            other => print_json(&other),
                        };
                        o.remove(&key).map(Val::Json).unwrap_or(Val::Missing)
                    }
                    (Value::Array(a), Value::Number(n)) => {
                        let i = n
                            .as_u64()
                            .ok_or_else(|| exec_err(format!("index: bad index {n}")))?;
                        a.get(i as usize).cloned().map(Val::Json).ok_or_else(|| {
                            exec_err(format!("error calling index: index out of range: {i}"))
                        })?
                    }
                    (Value::Null, _) => Val::Missing,
                    (other, _) => {
                        return Err(exec_err(format!(
                            "can't index item of type {}",
                            type_name(&other)
                        )))
                    }
                };
            }
            Ok(cur)
        }
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or_else(|| exec_err("eq: missing argument"))?;
            Ok(Val::Json(Value::Bool(rest.iter().any(|r| {
                compare(first, r) == Some(std::cmp::Ordering::Equal) || first.json() == r.json()
            }))))
        }
        "ne" => {
            want_args(name, &args, 2)?;
            Ok(Val::Json(Value::Bool(
                args[0].json() != args[1].json()
                    && compare(&args[0], &args[1]) != Some(std::cmp::Ordering::Equal),
            )))
        }
        "lt" | "le" | "gt" | "ge" => {
            want_args(name, &args, 2)?;
            let o = compare(&args[0], &args[1]).ok_or_else(|| {
                exec_err(format!("error calling {name}: incompatible types for comparison"))
            })?;
            use std::cmp::Ordering::*;
            let r = match name {
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            };
            Ok(Val::Json(Value::Bool(r)))
        }
        "not" => {
            want_args(name, &args, 1)?;
            Ok(Val::Json(Value::Bool(!args[0].truthy())))
        }
        "and" => Ok(args
            .iter()
            .find(|a| !a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Missing)),
        "or" => Ok(args
            .iter()
            .find(|a| a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Missing)),
        "print" => s(args.iter().map(as_str).collect::<Vec<_>>().join("")),
        "println" => s(format!(
            "{}\n",
            args.iter().map(as_str).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            let (f, rest) = args
                .split_first()
                .ok_or_else(|| exec_err("printf: missing format"))?;
            s(printf(&as_str(f), rest))
        }
        "lower" => {
            want_args(name, &args, 1)?;
            s(as_str(&args[0]).to_lowercase())
        }
        "upper" => {
            want_args(name, &args, 1)?;
            s(as_str(&args[0]).to_uppercase())
        }
        "title" => {
            want_args(name, &args, 1)?;
            let t = as_str(&args[0]);
            let mut out = String::new();
            let mut start = true;
            for c in t.chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            s(out)
        }
        "join" => {
            want_args(name, &args, 2)?;
            let items: Vec<String> = match args[0].json() {
                Value::Array(a) => a.iter().map(print_json).collect(),
                other => {
                    return Err(exec_err(format!(
                        "error calling join: want a list, got {}",
                        type_name(&other)
                    )))
                }
            };
            s(items.join(&as_str(&args[1])))
        }
        "split" => {
            want_args(name, &args, 2)?;
            let parts: Vec<Value> = as_str(&args[0])
                .split(as_str(&args[1]).as_str())
                .map(|p| Value::String(p.into()))
                .collect();
            Ok(Val::Json(Value::Array(parts)))
        }
        "pad" => {
            want_args(name, &args, 3)?;
            let n = |v: &Val| v.json().as_u64().unwrap_or(0) as usize;
            s(format!(
                "{}{}{}",
                " ".repeat(n(&args[1])),
                as_str(&args[0]),
                " ".repeat(n(&args[2]))
            ))
        }
        "truncate" => {
            want_args(name, &args, 2)?;
            let n = args[1].json().as_u64().unwrap_or(0) as usize;
            s(as_str(&args[0]).chars().take(n).collect())
        }
        _ => Err(parse_err(format!("function {name:?} not defined"))),
    }
}

/// `%s %v %d %q %%` — enough for the formats people write in `--format`.
fn printf(f: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&format!("{:?}", it.next().map(print_val).unwrap_or_default())),
            Some(_) => match it.next() {
                Some(v) => out.push_str(&print_val(v)),
                None => out.push_str("%!v(MISSING)"),
            },
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

/// Print as Go's `%v` prints a decoded JSON value.
pub fn print_val(v: &Val) -> String {
    match v {
        Val::Missing => "<no value>".to_string(),
        Val::Json(j) => print_json(j),
    }
}

fn print_json(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() >= 1e21 {
                    format!("{f:e}").replace('e', "e+")
                } else {
                    f.to_string()
                }
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(print_json).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let parts: Vec<String> = o.iter().map(|(k, v)| format!("{k}:{}", print_json(v))).collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: Value) -> String {
        Template::parse(t).unwrap().render(&v).unwrap()
    }

    fn inspect() -> Value {
        json!({
            "Id": "abc123",
            "Name": "/web",
            "State": {"Status": "running", "Pid": 4242, "ExitCode": 0, "Running": true},
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"com.x": "y", "tier": "db"}, "Cmd": ["sh", "-c", "echo hi"], "Tty": false},
            "HostConfig": {"Memory": 67108864, "NanoCpus": 1500000000u64},
            "Mounts": [],
            "Ratio": 1.5,
            "Null": null
        })
    }

    #[test]
    fn fields_and_nesting() {
        assert_eq!(r("{{.State.Status}}", inspect()), "running");
        assert_eq!(
            r("{{.State.Pid}} {{.HostConfig.Memory}}", inspect()),
            "4242 67108864"
        );
        assert_eq!(r("{{.Ratio}} {{.State.Running}}", inspect()), "1.5 true");
        assert_eq!(
            r("{{.Nope}} {{.Null}} {{.Null.X}}", inspect()),
            "<no value> <nil> <nil>"
        );
        assert_eq!(
            r("name={{.Name}}\\tid={{.Id}}", inspect()),
            "name=/web\tid=abc123"
        );
    }

    #[test]
    fn go_value_printing() {
        assert_eq!(r("{{.Config.Env}}", inspect()), "[A=1 B=2]");
        assert_eq!(r("{{.Config.Labels}}", inspect()), "map[com.x:y tier:db]");
        assert_eq!(r("{{.Mounts}}", inspect()), "[]");
    }

    #[test]
    fn json_function() {
        assert_eq!(
            r("{{json .Config.Labels}}", inspect()),
            r#"{"com.x":"y","tier":"db"}"#
        );
        assert_eq!(r("{{json .Config.Cmd}}", inspect()), r#"["sh","-c","echo hi"]"#);
        assert_eq!(r("{{json .State.Status}}", inspect()), r#""running""#);
        let whole: Value = serde_json::from_str(&r("{{json .}}", inspect())).unwrap();
        assert_eq!(whole, inspect());
        assert_eq!(
            r("{{.Config.Labels | json}}", inspect()),
            r#"{"com.x":"y","tier":"db"}"#
        );
    }

    #[test]
    fn index_range_if_with() {
        assert_eq!(r(r#"{{index .Config.Labels "com.x"}}"#, inspect()), "y");
        assert_eq!(r(r#"{{index .Config.Cmd 2}}"#, inspect()), "echo hi");
        assert_eq!(
            r(r#"{{index .Config.Labels "missing"}}"#, inspect()),
            "<no value>"
        );
        assert_eq!(r("{{range .Config.Env}}[{{.}}]{{end}}", inspect()), "[A=1][B=2]");
        assert_eq!(
            r(
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
                inspect()
            ),
            "com.x=y;tier=db;"
        );
        assert_eq!(
            r("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", inspect()),
            "0:A=1 1:B=2 "
        );
        assert_eq!(r("{{range .Mounts}}x{{else}}none{{end}}", inspect()), "none");
        assert_eq!(r("{{if .State.Running}}up{{else}}down{{end}}", inspect()), "up");
        assert_eq!(
            r(
                r#"{{if eq .State.Status "exited"}}E{{else if eq .State.Status "running"}}R{{else}}?{{end}}"#,
                inspect()
            ),
            "R"
        );
        assert_eq!(r("{{with .State}}{{.Pid}}{{end}}", inspect()), "4242");
        assert_eq!(
            r("{{if and .State.Running (not .Config.Tty)}}ok{{end}}", inspect()),
            "ok"
        );
        assert_eq!(r("{{range .Config.Env}}{{$.Name}}{{end}}", inspect()), "/web/web");
        assert_eq!(r("{{len .Config.Env}}", inspect()), "2");
    }

    #[test]
    fn string_functions_and_trim() {
        assert_eq!(
            r(
                "{{upper .State.Status}} {{lower \"AbC\"}} {{title \"hello world\"}}",
                inspect()
            ),
            "RUNNING abc Hello World"
        );
        assert_eq!(r(r#"{{join .Config.Cmd " "}}"#, inspect()), "sh -c echo hi");
        assert_eq!(r(r#"{{index (split "a:b" ":") 1}}"#, inspect()), "b");
        assert_eq!(
            r(r#"{{printf "%s-%d" .Name .State.Pid}}"#, inspect()),
            "/web-4242"
        );
        assert_eq!(r("a  {{- .State.Status -}}  b", inspect()), "arunningb");
        assert_eq!(r("{{/* comment */}}x", inspect()), "x");
        assert_eq!(r("{{(index .Config.Cmd 0)}}", inspect()), "sh");
    }

    #[test]
    fn ps_row_label_method() {
        let row = json!({"Labels": "a=1,b=2", "Names": "web"});
        assert_eq!(r(r#"{{.Label "b"}}|{{.Label "z"}}"#, row), "2|");
        let obj = json!({"Labels": {"a": "1"}});
        assert_eq!(r(r#"{{.Label "a"}}"#, obj), "1");
    }

    /// Arbitrary template text never panics, neither parsing nor rendering.
    #[test]
    fn arbitrary_templates_never_panic() {
        let pool = [
            "{{",
            "}}",
            ".",
            ".State",
            ".Config.Env",
            "range",
            "if",
            "else",
            "end",
            "with",
            "|",
            "json",
            "index",
            "\"",
            "`",
            "(",
            ")",
            "$",
            "$x",
            ":=",
            ",",
            " ",
            "-",
            "1",
            "eq",
            "len",
            "printf",
            "%",
            "x",
            "é",
            "nil",
        ];
        let mut seed: u64 = 0x2545f4914f6cdd1d;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut text = String::new();
            let mut x = seed;
            for _ in 0..(seed % 12) {
                text.push_str(pool[(x % pool.len() as u64) as usize]);
                x = x.rotate_left(11).wrapping_mul(6364136223846793005);
            }
            if let Ok(t) = Template::parse(&text) {
                let _ = t.render(&inspect());
            }
        }
    }

    #[test]
    fn bad_templates_are_errors() {
        for bad in [
            "{{.Foo",
            "{{if .A}}x",
            "{{end}}",
            "{{nosuch .A}}",
            "{{\"open}}",
            "{{range .A}}{{else}}",
            "{{.A |}}",
            "{{.A..B}}",
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.0.starts_with("template parsing error"), "{bad}: {e}");
        }
        let t = Template::parse("{{.State.Status.X}}").unwrap();
        assert!(t.render(&inspect()).is_err());
        let t = Template::parse("{{.Name 1}}").unwrap();
        assert!(t.render(&inspect()).is_err());
        let t = Template::parse("{{index .Config.Cmd 9}}").unwrap();
        assert!(t.render(&inspect()).is_err());
    }
}
