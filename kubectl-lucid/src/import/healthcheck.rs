//! A compose healthcheck recognised as an HTTP GET or a TCP connect the kubelet can make: the
//! seeds' `python3 -c "import socket ..."` and `urllib` forms, `curl -f`, `wget`. Anything
//! else is not guessed at; the caller reports it.

use crate::compose::Value;
use lucid_operator::api::{HealthCheck, HealthCheckKind};

use crate::compose::merge::scalar;

/// What was made of a healthcheck, and what could not be carried over.
pub struct Mapped {
    pub check: HealthCheck,
    /// Reasons something was lost; empty when it carried over whole.
    pub lost: Vec<String>,
}

/// `main_port` is the service's first port: the probe's default, as in the operator.
pub fn map(hc: Option<&Value>, main_port: Option<i32>) -> Mapped {
    let mut check = HealthCheck::default();
    let mut lost = Vec::new();
    let Some(Value::Object(hc)) = hc else {
        // No healthcheck: compose treats the container as healthy once it runs. With a port,
        // a TCP connect says the same and catches a process that never listens.
        check.kind = if main_port.is_some() {
            HealthCheckKind::Tcp
        } else {
            HealthCheckKind::None
        };
        return Mapped { check, lost };
    };
    for (key, field) in [
        ("interval", &mut check.interval_seconds),
        ("timeout", &mut check.timeout_seconds),
        ("start_period", &mut check.start_period_seconds),
    ] {
        if let Some(v) = hc.get(key) {
            match seconds(&scalar(v)) {
                Some(s) => *field = s,
                None => lost.push(format!(
                    "healthcheck.{key} {:?} is not a duration",
                    scalar(v)
                )),
            }
        }
    }
    if let Some(v) = hc.get("retries") {
        match scalar(v).parse::<i32>() {
            Ok(r) if r >= 1 => check.retries = r,
            _ => lost.push(format!(
                "healthcheck.retries {:?} is not a positive number",
                scalar(v)
            )),
        }
    }
    if hc.get("disable").and_then(Value::as_bool) == Some(true) {
        check.kind = HealthCheckKind::None;
        return Mapped { check, lost };
    }
    let command = match hc.get("test") {
        Some(Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(scalar).collect();
            match items.first().map(String::as_str) {
                Some("NONE") => {
                    check.kind = HealthCheckKind::None;
                    return Mapped { check, lost };
                }
                Some("CMD") | Some("CMD-SHELL") => items[1..].join(" "),
                _ => items.join(" "),
            }
        }
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    match recognise(&command) {
        Some((kind, port, path)) => {
            check.kind = kind;
            if let Some(path) = path {
                check.path = path;
            }
            let port = port.or(main_port);
            if port != main_port {
                check.port = port;
            }
            if port.is_none() {
                lost.push("healthcheck: the check names no port and the service has none".into());
                check.kind = HealthCheckKind::None;
            }
        }
        None => {
            check.kind = if main_port.is_some() {
                HealthCheckKind::Tcp
            } else {
                HealthCheckKind::None
            };
            lost.push(format!(
                "healthcheck test {:?} is not a form the kubelet can run (HTTP GET or TCP connect): replaced by {}",
                shorten(&command),
                if main_port.is_some() { "a TCP connect to the main port" } else { "no check" }
            ));
        }
    }
    Mapped { check, lost }
}

/// Kind, port and HTTP path of a recognised check.
fn recognise(command: &str) -> Option<(HealthCheckKind, Option<i32>, Option<String>)> {
    let program = command.split_whitespace().next().unwrap_or_default();
    let program = program.rsplit('/').next().unwrap_or(program);
    if program.starts_with("python") {
        if command.contains("socket")
            && (command.contains("connect_ex") || command.contains("create_connection"))
        {
            let at = command
                .find("connect_ex")
                .or_else(|| command.find("create_connection"))?;
            let port = literal_port_after_comma(&command[at..]).or_else(|| getenv_default(command));
            return Some((HealthCheckKind::Tcp, port, None));
        }
        if command.contains("urllib") && command.contains("urlopen") {
            let at = command.find("http://")?;
            let url = &command[at + "http://".len()..];
            let (host, port, path) = split_url(url);
            if !is_local(host) {
                return None;
            }
            // The seeds build the URL from pieces: 'http://127.0.0.1:' + str(port) + '/health'.
            let port = port.or_else(|| getenv_default(command));
            let path = path.or_else(|| quoted_path(&url[host.len()..]));
            return Some((
                HealthCheckKind::Http,
                port,
                Some(path.unwrap_or_else(|| "/".into())),
            ));
        }
        return None;
    }
    if program == "curl" || program == "wget" {
        // curl without --fail succeeds on a 500, a kubelet GET does not: stricter, so kept.
        let url = command
            .split_whitespace()
            .find(|w| w.starts_with("http://"))?;
        let url = url.trim_matches(|c| c == '\'' || c == '"');
        let (host, port, path) = split_url(&url["http://".len()..]);
        if !is_local(host) {
            return None;
        }
        return Some((
            HealthCheckKind::Http,
            Some(port.unwrap_or(80)),
            Some(path.unwrap_or_else(|| "/".into())),
        ));
    }
    None
}

fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]")
}

/// `host[:port][/path]` up to a quote or space.
fn split_url(url: &str) -> (&str, Option<i32>, Option<String>) {
    let end = url.find(['\'', '"', ' ', ')']).unwrap_or(url.len());
    let url = &url[..end];
    let (authority, path) = match url.find('/') {
        Some(at) => (&url[..at], Some(url[at..].to_string())),
        None => (url, None),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()),
        None => (authority, None),
    };
    (host, port, path)
}

/// The first `, 1234` after the connect call: `connect_ex(('127.0.0.1', 8089))`.
fn literal_port_after_comma(s: &str) -> Option<i32> {
    let comma = s.find(',')?;
    let digits: String = s[comma + 1..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The default of `os.getenv('X_PORT', '8089')`.
fn getenv_default(s: &str) -> Option<i32> {
    let at = s.find("getenv(")?;
    let rest = &s[at..];
    let close = rest.find(')')?;
    let args = &rest[..close];
    let (_, default) = args.split_once(',')?;
    default
        .trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .parse()
        .ok()
}

/// The first quoted string starting with `/`.
fn quoted_path(s: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let pattern = format!("{quote}/");
        if let Some(at) = s.find(&pattern) {
            let rest = &s[at + 1..];
            let end = rest.find(quote)?;
            return Some(rest[..end].to_string());
        }
    }
    None
}

/// Compose durations (`1m30s`, `500ms`, `40s`), rounded up to whole seconds, at least 1 (0 is
/// kept for `start_period`).
pub fn seconds(s: &str) -> Option<i32> {
    let mut total_ms: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if let Ok(n) = rest.parse::<u64>() {
        return i32::try_from(n).ok();
    }
    while !rest.is_empty() {
        let digits = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .count();
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let factor = match &rest[..unit] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "us" | "µs" => 0.001,
            _ => return None,
        };
        rest = &rest[unit..];
        total_ms += (number * factor) as u64;
    }
    i32::try_from(total_ms.div_ceil(1000)).ok()
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(yaml: &str) -> Mapped {
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        map(Some(&v), Some(8080))
    }

    #[test]
    fn the_seeds_urllib_form_is_an_http_get_of_its_path_and_port() {
        let m = hc(
            r#"{test: ["CMD", "/usr/bin/python3.11", "-c", "import os, urllib.request, sys; port = os.getenv('X_PORT', '8089'); url = 'http://127.0.0.1:' + str(port) + '/health'; urllib.request.urlopen(url, timeout=10).read(); sys.exit(0)"], interval: 15s, timeout: 5s, retries: 4, start_period: 1m}"#,
        );
        assert!(m.lost.is_empty(), "{:?}", m.lost);
        assert_eq!(m.check.kind, HealthCheckKind::Http);
        assert_eq!(m.check.path, "/health");
        assert_eq!(m.check.port, Some(8089));
        assert_eq!(
            (
                m.check.interval_seconds,
                m.check.timeout_seconds,
                m.check.retries,
                m.check.start_period_seconds
            ),
            (15, 5, 4, 60)
        );
    }

    #[test]
    fn the_seeds_socket_form_is_a_tcp_connect() {
        let m = hc(
            r#"{test: ["CMD", "/usr/bin/python3.11", "-c", "import socket; s = socket.socket(); s.settimeout(2); result = s.connect_ex(('127.0.0.1', 8080)); s.close(); exit(0 if result == 0 else 1)"]}"#,
        );
        assert_eq!((m.check.kind, m.check.port), (HealthCheckKind::Tcp, None));
        assert!(m.lost.is_empty());
    }

    #[test]
    fn curl_wget_and_shell_forms_are_http_gets() {
        for test in [
            r#"{test: ["CMD", "curl", "-f", "http://localhost:8080/ready"]}"#,
            r#"{test: "wget -q --spider http://127.0.0.1:8080/ready"}"#,
            r#"{test: ["CMD-SHELL", "curl -fsS http://localhost:8080/ready || exit 1"]}"#,
        ] {
            let m = hc(test);
            assert_eq!(
                (m.check.kind, m.check.path.as_str(), m.check.port),
                (HealthCheckKind::Http, "/ready", None),
                "{test}"
            );
        }
    }

    #[test]
    fn an_unknown_form_is_reported_not_guessed() {
        let m = hc(r#"{test: ["CMD", "redis-cli", "ping"]}"#);
        assert_eq!(m.check.kind, HealthCheckKind::Tcp);
        assert_eq!(m.lost.len(), 1);
        assert!(m.lost[0].contains("redis-cli ping"), "{:?}", m.lost);
        let m = hc(r#"{test: ["CMD", "curl", "-f", "http://example.org/health"]}"#);
        assert_eq!(
            m.lost.len(),
            1,
            "a check of another host is not this container's"
        );
    }

    #[test]
    fn disabled_checks_and_durations() {
        assert_eq!(hc("{disable: true}").check.kind, HealthCheckKind::None);
        assert_eq!(hc(r#"{test: ["NONE"]}"#).check.kind, HealthCheckKind::None);
        assert_eq!(seconds("1m30s"), Some(90));
        assert_eq!(seconds("500ms"), Some(1));
        assert_eq!(seconds("soon"), None);
    }
}
