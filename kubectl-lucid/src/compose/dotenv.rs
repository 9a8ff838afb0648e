//! `.env` and `env_file` files as compose 1.29 reads them (python-dotenv): `KEY=VALUE` lines,
//! an optional `export `, `#` comments, single quotes literal, double quotes with escapes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Problem;

/// The file's variables in order; a later line for the same key replaces the earlier value
/// in place, as a dict update would.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, Problem> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problem::new(
            path.display(),
            "",
            format!("cannot read env file: {}", io_reason(&e)),
        )
    })?;
    parse(&text)
        .map_err(|(line, message)| Problem::new(path.display(), format!("line {line}"), message))
}

pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    // A UTF-8 byte-order mark is skipped, as compose's utf-8-sig decoding does.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            // A bare name takes its value from the shell; env files here describe the
            // container's environment, so there is nothing to take.
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err((i + 1, format!("{key:?} is not a variable name")));
        }
        let value = unquote(value.trim()).map_err(|m| (i + 1, format!("{key}: {m}")))?;
        match out.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => out.push((key.to_string(), value)),
        }
    }
    Ok(out)
}

fn unquote(value: &str) -> Result<String, &'static str> {
    if let Some(rest) = value.strip_prefix('\'') {
        let end = rest.find('\'').ok_or("unterminated single quote")?;
        return Ok(rest[..end].to_string());
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated double quote");
    }
    // Unquoted: an inline comment starts at " #".
    let value = match value.find(" #") {
        Some(at) => &value[..at],
        None => value,
    };
    Ok(value.trim_end().to_string())
}

/// An `env_file` as compose 1.29 reads it: python-dotenv expands `${NAME}` and
/// `${NAME:-default}` (not `$NAME`) from the lines above it, then from the shell; an unset
/// name becomes empty. `.env` plays no part here.
pub fn read_env_file(
    path: &Path,
    shell: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Problem> {
    let mut vars = read(path)?;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in vars.iter_mut() {
        *v = expand(v, &seen, shell);
        seen.insert(k.clone(), v.clone());
    }
    Ok(vars)
}

/// python-dotenv's `\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}`.
fn expand(
    value: &str,
    file: &BTreeMap<String, String>,
    shell: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let Some(end) = rest[at..].find('}') else {
            break;
        };
        out.push_str(&rest[..at]);
        let body = &rest[at + 2..at + end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.contains(':') {
            // Not the pattern: kept as written.
            out.push_str(&rest[at..at + end + 1]);
        } else {
            let found = file
                .get(name)
                .or_else(|| shell.get(name))
                .filter(|v| !v.is_empty() || default.is_none());
            out.push_str(found.map(String::as_str).or(default).unwrap_or(""));
        }
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_comments_and_export_are_read_like_python_dotenv() {
        let vars = parse("# c\nexport A=1\nB='x y # z'\nC=\"q\\\"r\"\nD=plain # note\nA=2\nBARE\n")
            .unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "2".into()),
                ("B".into(), "x y # z".into()),
                ("C".into(), "q\"r".into()),
                ("D".into(), "plain".into()),
            ]
        );
    }

    #[test]
    fn env_files_expand_braced_names_from_lines_above_then_the_shell() {
        let file: BTreeMap<String, String> = [("B".to_string(), "b".to_string())].into();
        let shell: BTreeMap<String, String> = [
            ("S".to_string(), "s".to_string()),
            ("B".to_string(), "shell".to_string()),
        ]
        .into();
        assert_eq!(
            expand("${B}-${S}-${NOPE}-$S-${NOPE:-d}", &file, &shell),
            "b-s--$S-d"
        );
    }

    #[test]
    fn an_unterminated_quote_names_the_line() {
        assert_eq!(parse("A=1\nB='x\n").unwrap_err().0, 2);
    }
}
