#![cfg(test)]

//! Property tests of the pipeline file's errors: the example pipelines, each mutated at
//! a random key of weir's own (a plugin's `config` is the plugin's to judge), must be
//! refused with an error that names the key, or accepted; an unknown key is always
//! refused. Part of the fault suite (`docs/RELIABILITY.md`).

use proptest::prelude::*;
use toml::{Table, Value};

use super::PipelineConfig;

const EXAMPLES: [&str; 3] = [
    include_str!("../../../examples/rides/pipeline.toml"),
    include_str!("../../../examples/rides/pipeline-kafka.toml"),
    include_str!("../../../examples/rides/pipeline-files.toml"),
];

fn env(name: &str) -> Option<String> {
    Some(
        match name {
            "DATABASE_URL" => "postgres://weir@localhost/weir",
            "KAFKA_BROKERS" => "127.0.0.1:9092",
            _ => "x",
        }
        .into(),
    )
}

/// A key's place: the tables and array items above it, then its name.
type Path = Vec<Step>;

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Item(usize),
}

/// Every value of weir's own, with its path; tables too.
fn places(value: &Value, path: &mut Path, out: &mut Vec<Path>) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                if k == "config" {
                    continue;
                }
                path.push(Step::Key(k.clone()));
                out.push(path.clone());
                places(v, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate().filter(|(_, v)| v.is_table()) {
                path.push(Step::Item(i));
                places(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(root: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(root, |v, step| match step {
        Step::Key(k) => &mut v.as_table_mut().expect("a table on the path")[k],
        Step::Item(i) => &mut v.as_array_mut().expect("an array on the path")[*i],
    })
}

fn name(path: &[Step]) -> &str {
    match path.last() {
        Some(Step::Key(k)) => k,
        _ => unreachable!("a place ends with a key"),
    }
}

/// A value of another type than `old`. A table replaces only a table: written back out,
/// a table is a `[section]` of its own, whose error would point at the section's lines
/// rather than at the key (in a user's file, `kind = { x = 1 }` is one line, the key's).
fn retyped(old: &Value, pick: u8) -> Value {
    let choices = [
        Value::Integer(-7),
        Value::String("ǂwrong".into()),
        Value::Boolean(true),
        Value::Array(vec![Value::Integer(1)]),
        Value::Table(Table::from_iter([("x".to_string(), Value::Integer(1))])),
    ];
    let others: Vec<&Value> =
        choices.iter().filter(|c| c.type_str() != old.type_str() && (old.is_table() || !c.is_table())).collect();
    others[pick as usize % others.len()].clone()
}

fn example() -> impl Strategy<Value = (usize, Value)> {
    (0..EXAMPLES.len()).prop_map(|i| (i, Value::Table(toml::from_str(EXAMPLES[i]).expect("an example parses"))))
}

fn parse(root: &Value) -> Result<PipelineConfig, String> {
    PipelineConfig::parse(&toml::to_string(root).expect("a table serialises"), env).map_err(|e| format!("{e:#}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_examples_parse(i in 0..EXAMPLES.len()) {
        prop_assert!(PipelineConfig::parse(EXAMPLES[i], env).is_ok());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_naming_its_key((_, mut root) in example(), which: prop::sample::Index, pick: u8) {
        let mut found = Vec::new();
        places(&root, &mut Vec::new(), &mut found);
        let path = found[which.index(found.len())].clone();
        let slot = at(&mut root, &path);
        let replacement = retyped(slot, pick);
        // An integer where a float goes is the same number.
        let same = slot.is_float() && replacement.is_integer();
        *slot = replacement;
        match parse(&root) {
            Err(e) => prop_assert!(e.contains(name(&path)), "{path:?}: {e}"),
            Ok(_) => prop_assert!(same || name(&path) == "plugin", "{path:?} accepted {:?}", at(&mut root, &path)),
        }
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it((_, mut root) in example(), which: prop::sample::Index, letters in prop::collection::vec(0u8..26, 3..12)) {
        let mut tables: Vec<Path> = vec![Vec::new()];
        let mut found = Vec::new();
        places(&root, &mut Vec::new(), &mut found);
        tables.extend(found.into_iter().filter(|p| {
            let mut r = root.clone();
            at(&mut r, p).is_table()
        }));
        let path = tables[which.index(tables.len())].clone();
        let key: String = letters.iter().map(|l| (b'a' + l) as char).collect::<String>() + "_unknown";
        at(&mut root, &path).as_table_mut().expect("the places kept are tables").insert(key.clone(), Value::Integer(1));
        let e = parse(&root).expect_err("an unknown key is refused");
        prop_assert!(e.contains(&key), "{path:?}: {e}");
    }

    #[test]
    fn a_missing_key_is_named_when_it_is_needed((_, mut root) in example(), which: prop::sample::Index) {
        let mut found = Vec::new();
        places(&root, &mut Vec::new(), &mut found);
        let path = found[which.index(found.len())].clone();
        let (parent, key) = path.split_at(path.len() - 1);
        let Step::Key(key) = &key[0] else { unreachable!() };
        at(&mut root, parent).as_table_mut().expect("a key's parent is a table").remove(key);
        if let Err(e) = parse(&root) {
            prop_assert!(e.contains(key.as_str()), "{path:?}: {e}");
        }
    }
}
