//! `rules-validator`: declarative data-quality rules.
//!
//! ```toml
//! [stages.validate]
//! plugin = "rules-validator"
//! config.rules = [
//!   { name = "city-present", field = "city", type = "text", required = true },
//!   { name = "fare-non-negative", field = "fare", min = 0.0 },
//!   { name = "known-city", field = "city", allowed = ["Denver", "Oslo"], severity = "warn" },
//! ]
//! ```
//!
//! A rule checks one field with any of `required`, `min`/`max` and `allowed`. A field's
//! type comes from `type` on any of its rules, or else from the checks: a range means
//! `float64`, a list of allowed values means `text`. Severity defaults to `reject`.

use serde::Deserialize;
use weir_sdk::{ColumnDef, ColumnType, Config, EventBatch, Severity, Validator, Violation};

/// One rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name in violations; defaults to `<field>-<check>`.
    pub name: Option<String>,
    /// The field it checks.
    pub field: String,
    /// The field's type, when the checks do not tell.
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// The field must be present and not null.
    #[serde(default)]
    pub required: bool,
    /// The smallest allowed value (inclusive).
    pub min: Option<f64>,
    /// The largest allowed value (inclusive).
    pub max: Option<f64>,
    /// The allowed text values.
    pub allowed: Option<Vec<String>>,
    /// `warn`, `reject` (default) or `critical`.
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_severity() -> String {
    "reject".into()
}

/// The validator's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The rules, checked in order.
    pub rules: Vec<RuleConfig>,
}

struct Rule {
    name: String,
    column: usize,
    field: String,
    required: bool,
    min: Option<f64>,
    max: Option<f64>,
    allowed: Option<Vec<String>>,
    severity: Severity,
}

/// The configured validator.
pub struct RulesValidator {
    rules: Vec<Rule>,
}

impl Validator for RulesValidator {
    fn init(config: Config) -> Result<(Self, Vec<ColumnDef>), String> {
        let config: RulesConfig = config.parse()?;
        let mut inputs: Vec<ColumnDef> = Vec::new();
        let mut rules = Vec::new();
        for (i, rule) in config.rules.iter().enumerate() {
            let at = format!("config.rules[{i}] (field {:?})", rule.field);
            if !rule.required && rule.min.is_none() && rule.max.is_none() && rule.allowed.is_none() {
                return Err(format!("{at}: the rule checks nothing; set required, min, max or allowed"));
            }
            let severity = Severity::parse(&rule.severity).ok_or_else(|| {
                format!("config.rules[{i}].severity: {:?} is not warn, reject or critical", rule.severity)
            })?;
            let ty = field_type(&config.rules, &rule.field).map_err(|e| format!("{at}: {e}"))?;
            let column = match inputs.iter().position(|c| c.name == rule.field) {
                Some(column) => column,
                None => {
                    inputs.push(ColumnDef::nullable(rule.field.clone(), ty));
                    inputs.len() - 1
                }
            };
            let check = if rule.required {
                "required"
            } else if rule.allowed.is_some() {
                "allowed"
            } else {
                "range"
            };
            rules.push(Rule {
                name: rule.name.clone().unwrap_or_else(|| format!("{}-{check}", rule.field)),
                column,
                field: rule.field.clone(),
                required: rule.required,
                min: rule.min,
                max: rule.max,
                allowed: rule.allowed.clone(),
                severity,
            });
        }
        Ok((RulesValidator { rules }, inputs))
    }

    fn validate(&self, events: &EventBatch, out: &mut Vec<Violation>) {
        for rule in &self.rules {
            let column = &events.columns[rule.column];
            for row in 0..events.len() {
                let message = if !column.is_valid(row) {
                    rule.required.then(|| format!("{} is missing", rule.field))
                } else if let Some(allowed) = &rule.allowed {
                    let value = column.values.str(row).unwrap_or_default();
                    (!allowed.iter().any(|a| a == value))
                        .then(|| format!("{} {value:?} is not an allowed value", rule.field))
                } else {
                    match column.values.f64(row) {
                        Some(v) if rule.min.is_some_and(|min| v < min) || rule.max.is_some_and(|max| v > max) => {
                            Some(format!("{} {v} is outside [{}, {}]", rule.field, bound(rule.min), bound(rule.max)))
                        }
                        _ => None,
                    }
                };
                if let Some(message) = message {
                    out.push(Violation { row: row as u32, rule: rule.name.clone(), severity: rule.severity, message });
                }
            }
        }
    }
}

/// A field's type: the `type` its rules give (they must agree), or else what its checks imply.
fn field_type(rules: &[RuleConfig], field: &str) -> Result<ColumnType, String> {
    let mut explicit = None;
    let mut implied = None;
    for rule in rules.iter().filter(|r| r.field == field) {
        if let Some(name) = &rule.ty {
            let ty = ColumnType::parse(name).ok_or_else(|| format!("unknown type {name:?}"))?;
            if explicit.is_some_and(|e| e != ty) {
                return Err(format!(
                    "rules give the field two types, {} and {}",
                    explicit.map_or("", ColumnType::name),
                    ty.name()
                ));
            }
            explicit = Some(ty);
        }
        if rule.min.is_some() || rule.max.is_some() {
            implied = implied.or(Some(ColumnType::Float64));
        } else if rule.allowed.is_some() {
            implied = implied.or(Some(ColumnType::Text));
        }
    }
    explicit.or(implied).ok_or_else(|| {
        "cannot tell the field's type; add type = \"text\" (or int64, float64, boolean, timestamp)".into()
    })
}

fn bound(b: Option<f64>) -> String {
    b.map_or_else(|| "∞".to_string(), |v| v.to_string())
}

weir_sdk::export!(validator: RulesValidator);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{validate_all, Column, ColumnValues};

    fn validator(rules: serde_json::Value) -> (RulesValidator, Vec<ColumnDef>) {
        RulesValidator::init(Config::from_json(serde_json::json!({ "rules": rules }).to_string())).unwrap()
    }

    #[test]
    fn rides_rules() {
        let (v, inputs) = validator(serde_json::json!([
            {"name": "city-present", "field": "city", "required": true},
            {"name": "fare-non-negative", "field": "fare", "min": 0.0},
            {"name": "known-city", "field": "city", "allowed": ["Denver", "Oslo"], "severity": "warn"},
        ]));
        assert_eq!(
            inputs,
            vec![ColumnDef::nullable("city", ColumnType::Text), ColumnDef::nullable("fare", ColumnType::Float64)]
        );
        let events = EventBatch {
            len: 3,
            columns: vec![
                Column {
                    values: ColumnValues::Text(["Denver", "", "Paris"].into_iter().collect()),
                    valid: vec![true, false, true],
                },
                Column::new(ColumnValues::Float64(vec![1.0, 2.0, -3.5])),
            ],
        };
        let found: Vec<_> = validate_all(&v, &events).into_iter().map(|v| (v.row, v.rule, v.severity)).collect();
        assert_eq!(
            found,
            vec![
                (1, "city-present".to_string(), Severity::Reject),
                (2, "fare-non-negative".to_string(), Severity::Reject),
                (2, "known-city".to_string(), Severity::Warn),
            ]
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_key() {
        let err = RulesValidator::init(Config::from_json(r#"{"rules":[{"field":"fare","min":0,"severity":"fatal"}]}"#))
            .err()
            .unwrap();
        assert!(err.contains("rules[0].severity"), "{err}");
        let err =
            RulesValidator::init(Config::from_json(r#"{"rules":[{"field":"city","required":true}]}"#)).err().unwrap();
        assert!(err.contains("type"), "{err}");
        let err =
            RulesValidator::init(Config::from_json(r#"{"rules":[{"field":"city","colour":"red"}]}"#)).err().unwrap();
        assert!(err.contains("colour"), "{err}");
    }
}
