//! Compose 1.29's variable substitution: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, and `$$` for a literal `$`. Applied to every string
//! value of a file (never to keys) before the files are merged, as compose does.

use std::collections::BTreeMap;

use super::Value;

/// What substitution can find: the shell's environment over the `.env` file.
pub struct Variables {
    pub values: BTreeMap<String, String>,
}

/// What went wrong substituting one string.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// `${VAR:?message}` with VAR unset (or empty, for `:?`).
    Required {
        name: String,
        message: String,
    },
    Invalid(String),
}

impl Variables {
    /// One string, with the names of unset variables that became blank (compose warns).
    pub fn substitute(&self, s: &str, blanks: &mut Vec<String>) -> Result<String, Failure> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = closing_brace(body).ok_or_else(|| Failure::Invalid(s.to_string()))?;
                out.push_str(&self.braced(&body[..end], s, blanks)?);
                rest = &body[end + 1..];
            } else {
                let len = name_len(after);
                if len == 0 {
                    return Err(Failure::Invalid(s.to_string()));
                }
                out.push_str(&self.lookup(&after[..len], blanks));
                rest = &after[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn braced(&self, body: &str, whole: &str, blanks: &mut Vec<String>) -> Result<String, Failure> {
        let len = name_len(body);
        if len == 0 {
            return Err(Failure::Invalid(whole.to_string()));
        }
        let (name, op) = body.split_at(len);
        let value = self.values.get(name);
        let set_nonempty = value.is_some_and(|v| !v.is_empty());
        let given = |v: Option<&String>| v.cloned().unwrap_or_default();
        let required = |message: &str| Failure::Required {
            name: name.to_string(),
            message: message.to_string(),
        };
        match op {
            "" => Ok(self.lookup(name, blanks)),
            _ if op.starts_with(":-") => Ok(if set_nonempty {
                given(value)
            } else {
                op[2..].to_string()
            }),
            _ if op.starts_with('-') => Ok(match value {
                Some(v) => v.clone(),
                None => op[1..].to_string(),
            }),
            _ if op.starts_with(":?") => {
                if set_nonempty {
                    Ok(given(value))
                } else {
                    Err(required(&op[2..]))
                }
            }
            _ if op.starts_with('?') => match value {
                Some(v) => Ok(v.clone()),
                None => Err(required(&op[1..])),
            },
            _ => Err(Failure::Invalid(whole.to_string())),
        }
    }

    fn lookup(&self, name: &str, blanks: &mut Vec<String>) -> String {
        match self.values.get(name) {
            Some(v) => v.clone(),
            None => {
                if !blanks.iter().any(|b| b == name) {
                    blanks.push(name.to_string());
                }
                String::new()
            }
        }
    }
}

/// Compose's variable names: a letter or `_`, then letters, digits, `_`.
fn name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

fn closing_brace(body: &str) -> Option<usize> {
    body.find('}')
}

/// Substitutes every string value under `value`, collecting failures with the key path.
pub fn walk(
    vars: &Variables,
    value: &mut Value,
    path: &str,
    blanks: &mut Vec<(String, String)>,
    failures: &mut Vec<(String, Failure)>,
) {
    match value {
        Value::String(s) => {
            let mut names = Vec::new();
            match vars.substitute(s, &mut names) {
                Ok(v) => *s = v,
                Err(f) => failures.push((path.to_string(), f)),
            }
            blanks.extend(names.into_iter().map(|n| (path.to_string(), n)));
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(vars, item, &format!("{path}[{i}]"), blanks, failures);
            }
        }
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(vars, v, &child, blanks, failures);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        Variables {
            values: [("SET", "v"), ("EMPTY", "")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn sub(s: &str) -> Result<String, Failure> {
        vars().substitute(s, &mut Vec::new())
    }

    #[test]
    fn every_form_compose_knows() {
        assert_eq!(sub("a$SET-${SET}").unwrap(), "av-v");
        assert_eq!(sub("${EMPTY:-d}|${EMPTY-d}|${UNSET-d}").unwrap(), "d||d");
        assert_eq!(sub("$$SET costs $$5").unwrap(), "$SET costs $5");
        assert_eq!(sub("${SET:?no}").unwrap(), "v");
        assert_eq!(sub("${EMPTY?no}").unwrap(), "");
    }

    #[test]
    fn a_missing_required_variable_carries_its_message() {
        assert_eq!(
            sub("${UNSET:?UNSET not set}").unwrap_err(),
            Failure::Required {
                name: "UNSET".into(),
                message: "UNSET not set".into()
            }
        );
        assert!(matches!(sub("${EMPTY:?x}"), Err(Failure::Required { .. })));
    }

    #[test]
    fn unset_variables_become_blank_and_are_named() {
        let mut blanks = Vec::new();
        assert_eq!(vars().substitute("x${NOPE}y", &mut blanks).unwrap(), "xy");
        assert_eq!(blanks, vec!["NOPE".to_string()]);
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(sub("${}"), Err(Failure::Invalid(_))));
        assert!(matches!(sub("${A"), Err(Failure::Invalid(_))));
        assert!(matches!(sub("${A:x}"), Err(Failure::Invalid(_))));
        assert!(matches!(sub("cost $5"), Err(Failure::Invalid(_))));
    }
}
