//! docs/configuration.md against `src/config.rs`: every key the code accepts has its line, every
//! line names a key the code accepts, with the right kind of value, the default the code uses
//! and the `MANDATE_*` variable that really overrides it.
//!
//! The keys come from the code itself, not from its text: [`Probe`] is a serde `Deserializer`
//! that `Config::deserialize` walks like a file, and it records the field list serde derives
//! for every struct it meets (the same list `deny_unknown_fields` checks a file against).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use mandate::config::Config;
use serde::Deserialize;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

const DOC: &str = include_str!("../../docs/configuration.md");

/// The kind of value a key takes, as serde asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Integer,
    /// A float (`tracing.sample_ratio`).
    Number,
    Boolean,
    List,
    Table,
}

#[derive(Default)]
struct Found {
    /// `path → kind` of every field met (`tokens.access_token_ttl`, `clients[].public`).
    fields: BTreeMap<String, Option<Kind>>,
    /// Paths that turned out to be structs (tables), including array elements (`clients[]`).
    structs: BTreeSet<String>,
}

/// A deserializer that makes up a value of whatever type is asked for and records, at
/// `path`, what that was.
struct Probe<'f> {
    path: String,
    found: &'f RefCell<Found>,
}

impl Probe<'_> {
    fn kind(&self, kind: Kind) {
        if let Some(k) = self.found.borrow_mut().fields.get_mut(&self.path) {
            k.get_or_insert(kind);
        }
    }
}

impl Probe<'_> {
    fn integer<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.kind(Kind::Integer);
        v.visit_u64(1)
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Error;

    /// Self-describing values (`serde_json::Value`, `toml::Value`): any table will do.
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_map(v)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.kind(Kind::Boolean);
        v.visit_bool(false)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.integer(v)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.kind(Kind::Number);
        v.visit_f64(1.0)
    }
    /// "1s" is a string, a path and a duration alike.
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.kind(Kind::String);
        // A duration satisfies every string key but `log_format`, which takes a closed set.
        v.visit_str(if self.path == "log_format" {
            "json"
        } else {
            "1s"
        })
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }
    /// A list of one element, so that the element's own fields are found too.
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.kind(Kind::List);
        v.visit_seq(One(Some(Probe {
            path: format!("{}[]", self.path),
            found: self.found,
        })))
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.kind(Kind::Table);
        v.visit_map(Fields {
            path: String::new(),
            fields: [].iter(),
            next: None,
            found: self.found,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.kind(Kind::Table);
        {
            let mut found = self.found.borrow_mut();
            found.structs.insert(self.path.clone());
            for f in fields {
                found.fields.entry(join(&self.path, f)).or_insert(None);
            }
        }
        v.visit_map(Fields {
            path: self.path,
            fields: fields.iter(),
            next: None,
            found: self.found,
        })
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 char bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct
        enum identifier ignored_any
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Every field of a struct, each with a [`Probe`] for its value.
struct Fields<'f> {
    path: String,
    fields: std::slice::Iter<'static, &'static str>,
    next: Option<&'static str>,
    found: &'f RefCell<Found>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.next = Some(field);
        let key: StrDeserializer<'_, Error> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.next.take().unwrap_or_default();
        seed.deserialize(Probe {
            path: join(&self.path, field),
            found: self.found,
        })
    }
}

struct One<'f>(Option<Probe<'f>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|p| seed.deserialize(p)).transpose()
    }
}

/// The keys of `Config`: `path → kind` of every field that is not itself a table or a list of
/// tables (those are sections: `tokens`, `clients`).
fn code_keys() -> BTreeMap<String, Kind> {
    let found = RefCell::new(Found::default());
    let probe = Probe {
        path: String::new(),
        found: &found,
    };
    Config::deserialize(probe).expect("the probe makes up a value of every type Config has");
    let found = found.into_inner();
    found
        .fields
        .into_iter()
        .filter(|(path, _)| {
            !found.structs.contains(path) && !found.structs.contains(&format!("{path}[]"))
        })
        .map(|(path, kind)| {
            let kind = kind.unwrap_or_else(|| panic!("no value was asked for `{path}`"));
            (path, kind)
        })
        .collect()
}

/// One row of a `| key | type | default | env | meaning |` table of the docs.
#[derive(Debug)]
struct Row {
    key: String,
    kind: String,
    default: String,
    env: String,
    meaning: String,
}

/// The table cells of `line`, split on `|` that is not escaped as `\|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                out.last_mut().unwrap().push('|');
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

fn code_span(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

fn doc_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in DOC.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let c = cells(line);
        if c == ["key", "type", "default", "env", "meaning"] {
            in_table = true;
            continue;
        }
        if !in_table || c.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        let [key, kind, default, env, meaning] = c.as_slice() else {
            panic!("a key row needs five cells: {line}");
        };
        rows.push(Row {
            key: code_span(key)
                .unwrap_or_else(|| panic!("the key cell is not `code`: {line}"))
                .to_owned(),
            kind: kind.clone(),
            default: default.clone(),
            env: env.clone(),
            meaning: meaning.clone(),
        });
    }
    rows
}

/// A TOML file that sets `key` (a documented path) to `value`.
fn toml_setting(key: &str, value: &str) -> String {
    match key.split_once('.') {
        Some((table, field)) => format!("[{table}]\n{field} = {value}\n"),
        None => format!("{key} = {value}\n"),
    }
}

fn is_entry_key(key: &str) -> bool {
    key.contains("[].")
}

#[test]
fn every_config_key_has_its_docs_line_and_every_docs_line_a_key() {
    let code = code_keys();
    assert!(code.len() > 40, "the probe found too few keys: {code:?}");
    let rows = doc_rows();
    let mut documented = BTreeSet::new();
    for r in &rows {
        assert!(
            documented.insert(r.key.as_str()),
            "`{}` is documented twice",
            r.key
        );
    }
    let missing: Vec<&String> = code
        .keys()
        .filter(|k| !documented.contains(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys without a line in docs/configuration.md: {missing:?}"
    );
    let gone: Vec<&&str> = documented
        .iter()
        .filter(|k| !code.contains_key(**k))
        .collect();
    assert!(
        gone.is_empty(),
        "docs/configuration.md documents keys src/config.rs does not accept: {gone:?}"
    );
}

#[test]
fn documented_types_and_meanings_match_the_code() {
    let code = code_keys();
    for r in doc_rows() {
        let Some(kind) = code.get(&r.key) else {
            continue;
        };
        let first = r.kind.split_whitespace().next().unwrap_or_default();
        let documented = match first {
            "string" | "duration" | "path" => Kind::String,
            "integer" => Kind::Integer,
            "number" => Kind::Number,
            "boolean" => Kind::Boolean,
            "list" => Kind::List,
            "table" => Kind::Table,
            other => panic!("`{}`: unknown type word {other:?} in the docs", r.key),
        };
        assert_eq!(
            documented, *kind,
            "`{}` is documented as {:?}",
            r.key, r.kind
        );
        assert!(
            r.meaning.len() > 10,
            "`{}` has no meaning in the docs",
            r.key
        );
    }
}

/// A documented default is what the code does with the key absent: the file that sets it
/// (and the environment variable that sets it) gives the same config as no file at all.
#[test]
fn documented_defaults_and_env_overrides_are_the_codes() {
    let defaults = format!("{:?}", Config::defaults());
    let mut checked = 0;
    for r in doc_rows() {
        let expected_env = if is_entry_key(&r.key) {
            "—".to_owned()
        } else {
            format!("`MANDATE_{}`", r.key.replace('.', "_").to_ascii_uppercase())
        };
        assert_eq!(r.env, expected_env, "the env column of `{}`", r.key);
        let Some(literal) = code_span(&r.default) else {
            assert!(
                r.default == "—" || r.default == "required",
                "`{}`: a default is a `TOML literal`, `—` or `required`, not {:?}",
                r.key,
                r.default
            );
            continue;
        };
        if is_entry_key(&r.key) {
            // An entry's own default: the literal must at least be a value of that key.
            let (table, field) = r.key.split_once("[].").unwrap_or_default();
            let required: String = doc_rows()
                .iter()
                .filter(|o| o.default == "required")
                // The entry's own fields, not those of a list nested in it (`tools[].name`).
                .filter(|o| {
                    (o.key.strip_prefix(&format!("{table}[]."))).is_some_and(|f| !f.contains('.'))
                })
                .map(|o| format!("{} = \"x\"\n", o.key.rsplit('.').next().unwrap_or_default()))
                .collect();
            let text = format!("[[{table}]]\n{required}{field} = {literal}\n");
            toml::from_str::<Config>(&text)
                .unwrap_or_else(|e| panic!("`{}`: {literal} is not a value of it: {e}", r.key));
            continue;
        }
        let text = toml_setting(&r.key, literal);
        let from_file = Config::from_toml(&text, "docs.toml", Vec::new())
            .unwrap_or_else(|e| panic!("`{}` = {literal}: {e}", r.key));
        assert_eq!(
            format!("{from_file:?}"),
            defaults,
            "docs/configuration.md says `{}` defaults to {literal}; the code's default differs",
            r.key
        );
        let raw = literal.trim_matches('"').to_owned();
        let env_name = expected_env.trim_matches('`').to_owned();
        let from_env = Config::from_toml("", "docs.toml", vec![(env_name.clone(), raw)])
            .unwrap_or_else(|e| panic!("{env_name} does not override `{}`: {e}", r.key));
        assert_eq!(format!("{from_env:?}"), defaults, "{env_name}");
        checked += 1;
    }
    assert!(checked > 20, "only {checked} defaults were checked");
}

/// The test above can fail: a key the docs do not name is found, and so is a docs line whose
/// key the code does not accept.
#[test]
fn the_probe_sees_what_serde_sees() {
    let code = code_keys();
    for key in [
        "tokens.access_token_ttl",
        "clients[].jwks",
        "agents[].pcr_policy",
        "issuer",
    ] {
        assert!(code.contains_key(key), "{key} in {:?}", code.keys());
    }
    assert_eq!(code.get("clients[].public"), Some(&Kind::Boolean));
    assert_eq!(code.get("server.max_headers"), Some(&Kind::Integer));
    assert_eq!(code.get("policy.files"), Some(&Kind::List));
    assert!(
        !code.contains_key("tokens")
            && !code.contains_key("clients")
            && !code.contains_key("source")
    );
    // What the docs test relies on: serde refuses a key it does not know.
    assert!(toml::from_str::<Config>("[tokens]\nno_such_key = 1\n").is_err());
}

/// The demo config that `cargo run --release` serves (README's first command) is one the server
/// accepts, with what it says it turns on.
#[test]
fn the_demo_config_is_valid_and_turns_on_what_it_says() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/mandate.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let config = Config::from_toml(&text, path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.registration.enabled && config.cimd.enabled);
    assert!(
        !config.cimd.allow_private_addresses,
        "the demo fetches public documents only"
    );
    // The SDK examples (examples/) sign their agents in with the demo keys they ship.
    for agent in ["planner", "payments-bot"] {
        let registered = config
            .agents
            .iter()
            .find(|a| a.name == agent)
            .and_then(|a| a.public_jwk.clone())
            .unwrap_or_else(|| panic!("the demo registers the examples' agent {agent}"));
        let path = format!("{}/examples/keys/{agent}.pem", env!("CARGO_MANIFEST_DIR"));
        let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let key = mandate_agent::SoftwareKey::from_pem(&pem).unwrap();
        assert_eq!(
            key.public_jwk(),
            registered,
            "{path} is the private half of the registered key"
        );
    }
}
