//! One merged compose service as a LucidService. Each compose key is either carried over,
//! replaced by the hardening (a note), or reported as lost with the reason.

use std::collections::BTreeMap;

use crate::compose::Value;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ResourceRequirements, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lucid_operator::api::{
    ConfigFileSpec, EnvFromSource, EnvValueSource, EnvVar, ImageSpec, KeyRef, LucidService,
    LucidServiceSpec, ObjectRef, PortProtocol, PortSpec, ServiceExposure, ServiceType, VolumeKind,
};

use super::{EnvFile, Finding, Imported, healthcheck, imported_labels, secrets};
use crate::compose::{self, merge::scalar};
use crate::error::Problem;

/// Keys carried over (or deliberately replaced by the hardening) below.
const HANDLED: &[&str] = &[
    "image",
    "container_name",
    "restart",
    "env_file",
    "environment",
    "networks",
    "ports",
    "expose",
    "volumes",
    "user",
    "security_opt",
    "cap_add",
    "cap_drop",
    "read_only",
    "tmpfs",
    "healthcheck",
    "labels",
    "depends_on",
    "command",
    "entrypoint",
    "privileged",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "deploy",
    "logging",
    "hostname",
];

/// Why a known key has no place in a LucidService.
fn unsupported_reason(key: &str) -> &'static str {
    match key {
        "network_mode" => "host or shared network namespaces break the pod's network isolation",
        "devices" | "device_cgroup_rules" => "host devices are not available to hardened pods",
        "pid" | "ipc" | "userns_mode" | "cgroup_parent" => {
            "host namespaces are not available to hardened pods"
        }
        "build" => "images are built outside the cluster: push the image and name it in image",
        "extra_hosts" | "dns" | "dns_search" | "dns_opt" | "links" | "external_links"
        | "domainname" | "mac_address" => {
            "cluster DNS resolves service names; host and DNS overrides are not carried over"
        }
        "secrets" | "configs" => {
            "compose secrets and configs are not carried over: use env files or the config file"
        }
        "sysctls" | "ulimits" | "shm_size" | "oom_kill_disable" | "oom_score_adj"
        | "pids_limit" | "storage_opt" => {
            "kernel and resource knobs beyond memory and CPU have no LucidService field"
        }
        _ => "has no LucidService field",
    }
}

pub(super) fn service(
    s: &compose::Service,
    phase: &str,
    env_files: &BTreeMap<String, Option<EnvFile>>,
    out: &mut Imported,
) -> Result<(LucidService, Option<Secret>), Vec<Problem>> {
    let name = s.name.clone();
    let key = |k: &str| format!("services.{name}.{k}");
    let mut problems = Vec::new();
    let mut lost = |k: &str, reason: String| {
        out.lost.push(Finding {
            service: name.clone(),
            key: k.into(),
            reason,
        })
    };
    let mut notes: Vec<Finding> = Vec::new();
    let mut note = |k: &str, reason: String| {
        notes.push(Finding {
            service: name.clone(),
            key: k.into(),
            reason,
        })
    };

    let image = match s.get("image").map(scalar) {
        Some(i) if !i.is_empty() => parse_image(&i),
        _ => {
            problems.push(Problem::new(
                s.file_of("image"),
                key("image"),
                "no image: a LucidService runs an image, so build and push it, then name it here",
            ));
            return Err(problems);
        }
    };

    for (k, _) in &s.body {
        let k = k.clone();
        if !HANDLED.contains(&k.as_str()) && !k.starts_with("x-") {
            lost(&k, unsupported_reason(&k).to_string());
        }
    }
    if s.get("privileged").and_then(Value::as_bool) == Some(true) {
        lost("privileged", "privileged containers are refused by the hardening (and the restricted Pod Security Standard)".into());
    }

    let mut ports = Vec::new();
    let mut external = false;
    for (field, published_counts) in [("ports", true), ("expose", false)] {
        for (i, p) in seq(s.get(field)).iter().enumerate() {
            match parse_port(p) {
                Ok(port) => {
                    external |= published_counts && port.published;
                    if let Some(reason) = port.lost {
                        lost(&format!("{field}[{i}]"), reason);
                    }
                    push_port(&mut ports, port.port, port.protocol);
                }
                Err(reason) => lost(&format!("{field}[{i}]"), reason),
            }
        }
    }
    if external {
        note("ports", "published ports become a NodePort Service: Kubernetes picks the node port (30000-32767), not the host port".into());
    }
    let main_port = ports.first().map(|p: &PortSpec| p.port);

    let mut spec: LucidServiceSpec = match serde_json::from_value(serde_json::json!({
        "image": image, "phase": phase,
    })) {
        Ok(spec) => spec,
        Err(e) => {
            problems.push(Problem::new(
                s.file_of("image"),
                key("image"),
                format!("not a usable image reference: {e}"),
            ));
            return Err(problems);
        }
    };
    spec.ports = ports;
    if external {
        spec.service = ServiceExposure {
            type_: ServiceType::NodePort,
        };
    }

    // Entry point and arguments, as the pod spec's command and args.
    for (k, field) in [
        ("entrypoint", &mut spec.command),
        ("command", &mut spec.args),
    ] {
        match s.get(k) {
            Some(Value::Array(items)) => *field = Some(items.iter().map(scalar).collect()),
            Some(Value::String(line)) => match split_words(line) {
                Some(words) => *field = Some(words),
                None => lost(k, "unbalanced quotes in the command line".into()),
            },
            _ => {}
        }
    }

    if let Some(Value::Object(deps)) = s.get("depends_on") {
        for (dep, how) in deps {
            let condition = how
                .get("condition")
                .map(scalar)
                .unwrap_or_else(|| "service_started".into());
            match condition.as_str() {
                "service_healthy" => {}
                "service_started" => note(
                    "depends_on",
                    format!(
                        "{}: service_started becomes waiting for Ready, which is stricter",
                        dep.clone()
                    ),
                ),
                other => lost(
                    "depends_on",
                    format!(
                        "{}: condition {other} has no equivalent (it waits for Ready)",
                        dep.clone()
                    ),
                ),
            }
            spec.depends_on.push(dep.clone());
        }
    }

    // env_file: each file's ConfigMap, then its Secret (their keys never overlap), in order.
    let mut env_from = Vec::new();
    for entry in seq(s.get("env_file")) {
        let Some(Some(ef)) = env_files.get(&scalar(&entry)) else {
            continue;
        };
        if !ef.plain.is_empty() {
            env_from.push(EnvFromSource {
                config_map_ref: Some(ObjectRef {
                    name: ef.object.clone(),
                    optional: false,
                }),
                secret_ref: None,
                prefix: None,
            });
        }
        if !ef.secret.is_empty() {
            env_from.push(EnvFromSource {
                config_map_ref: None,
                secret_ref: Some(ObjectRef {
                    name: ef.object.clone(),
                    optional: false,
                }),
                prefix: None,
            });
        }
    }
    spec.env_from = env_from;

    // environment: literal values, except secret-looking ones, which go to the service's own
    // Secret so the LucidService never holds a secret.
    let own_secret = format!("{name}-env");
    let mut secret_data = BTreeMap::new();
    if let Some(Value::Object(env)) = s.get("environment") {
        for (k, v) in env {
            let k = k.clone();
            let Some(v) = (!v.is_null()).then(|| scalar(v)) else {
                lost(&format!("environment.{k}"), "no value: compose takes it from the shell running compose, which the cluster does not have".into());
                continue;
            };
            if secrets::looks_secret(&k, &v) {
                secret_data.insert(k.clone(), ByteString(v.into_bytes()));
                spec.env.push(EnvVar {
                    name: k.clone(),
                    value: None,
                    value_from: Some(EnvValueSource {
                        secret_key_ref: Some(KeyRef {
                            name: own_secret.clone(),
                            key: k,
                            optional: false,
                        }),
                        config_map_key_ref: None,
                    }),
                });
            } else {
                // The kubelet expands `$(NAME)` in env values; compose does not: `$$(` keeps
                // the text as compose passed it.
                spec.env.push(EnvVar {
                    name: k,
                    value: Some(v.replace("$(", "$$(")),
                    value_from: None,
                });
            }
        }
    }

    let mapped = healthcheck::map(s.get("healthcheck"), main_port);
    spec.health_check = mapped.check;
    for reason in mapped.lost {
        lost("healthcheck", reason);
    }

    storage(s, &name, &mut spec, &mut lost, &mut note);
    hardening(s, &mut spec, &mut lost, &mut note);
    spec.resources = resources(s, spec.resources.clone(), &mut lost);

    if let Some(Value::Object(nets)) = s.get("networks") {
        spec.networks.clear();
        for (net, how) in nets {
            let net = net.clone();
            if !lucid_operator::api::is_dns_label(&net) {
                problems.push(Problem::new(
                    s.file_of("networks"),
                    key("networks"),
                    format!("network {net:?} is not a DNS label: rename it"),
                ));
            }
            if let Value::Object(how) = how {
                for k in how.keys() {
                    let reason = match k.as_str() {
                        "ipv4_address" | "ipv6_address" => {
                            "static IPs: pods get addresses from the cluster; use the service name"
                        }
                        "aliases" => "network aliases: only the service name resolves",
                        _ => "has no LucidService field",
                    };
                    lost(&format!("networks.{net}.{k}"), reason.into());
                }
            }
            spec.networks.push(net);
        }
        if spec.networks.is_empty() {
            spec.networks = vec![lucid_operator::api::DEFAULT_NETWORK.to_string()];
        }
    }

    if let Some(Value::Object(labels)) = s.get("labels") {
        // Compose labels may hold anything; as pod annotations every value is allowed.
        spec.annotations = labels.iter().map(|(k, v)| (k.clone(), scalar(v))).collect();
    }
    if let Some(cn) = s.get("container_name").map(scalar)
        && cn != name
    {
        note(
            "container_name",
            format!(
                "{cn}: other services reach it by the service name {name}, not the container name"
            ),
        );
    }
    match s.get("restart").map(scalar).as_deref() {
        None | Some("always") | Some("unless-stopped") => {}
        Some(policy) => lost(
            "restart",
            format!("{policy}: a Deployment always restarts its pods"),
        ),
    }
    if s.get("logging").is_some() {
        lost(
            "logging",
            "log drivers: containers log to stdout and the kubelet keeps the logs".into(),
        );
    }
    if s.get("hostname").is_some() {
        lost(
            "hostname",
            "the pod's hostname is its own; other services use the service name".into(),
        );
    }
    out.notes.extend(notes);

    if !problems.is_empty() {
        return Err(problems);
    }
    let mut ls = LucidService::new(&name, spec);
    let files: Vec<&EnvFile> = seq(s.get("env_file"))
        .iter()
        .filter_map(|e| env_files.get(&scalar(e)).and_then(Option::as_ref))
        .collect();
    for pinned in keep_env_file_values(&mut ls, &files) {
        out.notes.push(Finding {
            service: name.clone(),
            key: "env_file".into(),
            reason: format!(
                "{pinned}: the env file's value is set in env, over the operator's own"
            ),
        });
    }
    ls.metadata.labels = Some(imported_labels());
    let secret = (!secret_data.is_empty()).then(|| Secret {
        metadata: ObjectMeta {
            name: Some(own_secret),
            labels: Some(imported_labels()),
            ..Default::default()
        },
        data: Some(secret_data),
        type_: Some("Opaque".into()),
        ..Default::default()
    });
    Ok((ls, secret))
}

/// The operator's own variables (`LUCID_ENV`, `<SERVICE>_URL`, ...) beat `envFrom`, but in
/// compose an env file's value for one of them reached the container. Each one an env file
/// sets differently is pinned in `env` to that file's ConfigMap or Secret key (the last file
/// setting it, as compose reads them), so the value itself stays out of the LucidService.
/// The operator's values come from its own render, not a copy of its list.
fn keep_env_file_values(ls: &mut LucidService, files: &[&EnvFile]) -> Vec<String> {
    let mut probe = ls.clone();
    probe.metadata.namespace = Some("default".into());
    probe.metadata.uid = Some(crate::render::PLACEHOLDER_UID.into());
    let Ok(children) = lucid_operator::render::render(&probe, &Default::default()) else {
        return Vec::new();
    };
    let injected: Vec<(String, String)> = children
        .deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.env)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !ls.spec.env.iter().any(|u| u.name == e.name))
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect();
    let mut pinned = Vec::new();
    for (var, operator_value) in injected {
        // The last file that sets it wins, as in compose.
        let source = files.iter().rev().find_map(|f| {
            let plain = f
                .plain
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| (v, false));
            let secret = f
                .secret
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| (v, true));
            plain
                .or(secret)
                .map(|(v, is_secret)| (f.object.clone(), v.clone(), is_secret))
        });
        let Some((object, value, is_secret)) = source else {
            continue;
        };
        if value == operator_value {
            continue;
        }
        let key = KeyRef {
            name: object,
            key: var.clone(),
            optional: false,
        };
        let from = if is_secret {
            EnvValueSource {
                secret_key_ref: Some(key),
                config_map_key_ref: None,
            }
        } else {
            EnvValueSource {
                secret_key_ref: None,
                config_map_key_ref: Some(key),
            }
        };
        ls.spec.env.push(EnvVar {
            name: var.clone(),
            value: None,
            value_from: Some(from),
        });
        pinned.push(var);
    }
    pinned
}

fn seq(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other.clone()],
    }
}

/// `repo[:tag][@digest]`, the tag being after the last `/`.
fn parse_image(image: &str) -> ImageSpec {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repository, tag) = match rest[slash..].rfind(':') {
        Some(at) => (
            &rest[..slash + at],
            Some(rest[slash + at + 1..].to_string()),
        ),
        None => (rest, None),
    };
    ImageSpec {
        repository: repository.to_string(),
        // `latest` when no tag is given, as docker pulls it; not the operator's own default.
        tag: tag.unwrap_or_else(|| "latest".into()),
        digest,
        pull_policy: Default::default(),
    }
}

fn push_port(ports: &mut Vec<PortSpec>, port: i32, protocol: PortProtocol) {
    if ports
        .iter()
        .any(|p| p.port == port && p.protocol == protocol)
    {
        return;
    }
    let name = format!(
        "{}-{port}",
        if protocol == PortProtocol::Udp {
            "udp"
        } else {
            "tcp"
        }
    );
    ports.push(PortSpec {
        name,
        port,
        protocol,
        node_port: None,
    });
}

/// A container port, whether it is published on the host, and what was lost.
struct Port {
    port: i32,
    protocol: PortProtocol,
    published: bool,
    lost: Option<String>,
}

fn parse_port(v: &Value) -> Result<Port, String> {
    let (target, protocol, published, host_ip) = match v {
        Value::Number(n) => (n.to_string(), "tcp".to_string(), false, None),
        Value::String(s) => {
            let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
            let parts: Vec<&str> = spec.split(':').collect();
            let (ip, published) = match parts.len() {
                1 => (None, false),
                2 => (None, true),
                _ => (Some(parts[..parts.len() - 2].join(":")), true),
            };
            (
                parts[parts.len() - 1].to_string(),
                proto.to_string(),
                published,
                ip,
            )
        }
        Value::Object(m) => (
            m.get("target").map(scalar).unwrap_or_default(),
            m.get("protocol")
                .map(scalar)
                .unwrap_or_else(|| "tcp".into()),
            m.get("published").is_some(),
            None,
        ),
        _ => return Err("not a port".into()),
    };
    if target.contains('-') {
        return Err(format!("port range {target}: list each port"));
    }
    let port: i32 = target
        .parse()
        .map_err(|_| format!("{target:?} is not a port number"))?;
    if !(1..=65535).contains(&port) {
        return Err(format!("{port} is not a port number"));
    }
    let protocol = match protocol.as_str() {
        "tcp" => PortProtocol::Tcp,
        "udp" => PortProtocol::Udp,
        other => return Err(format!("protocol {other} is not TCP or UDP")),
    };
    if let Some(ip) = host_ip.filter(|ip| !ip.is_empty() && ip != "0.0.0.0") {
        let lost = format!(
            "published on host address {ip} only: a Service cannot bind one node address, so the port stays cluster-internal"
        );
        return Ok(Port {
            port,
            protocol,
            published: false,
            lost: Some(lost),
        });
    }
    Ok(Port {
        port,
        protocol,
        published,
        lost: None,
    })
}

/// A command line split as a POSIX shell splits words (quotes, backslashes; no expansion).
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Volumes and tmpfs: data and logs as claims, the named cache volume, the config file and
/// `/tmp`. Anything else is lost: the root filesystem is read-only and nothing else mounts.
fn storage(
    s: &compose::Service,
    name: &str,
    spec: &mut LucidServiceSpec,
    lost: &mut impl FnMut(&str, String),
    note: &mut impl FnMut(&str, String),
) {
    let mut data = false;
    let mut logs = false;
    let mut claimed = Vec::new();
    for (i, v) in seq(s.get("volumes")).iter().enumerate() {
        let (source, target, read_only) = match v {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [t] => (String::new(), t.to_string(), false),
                    [src, t] => (src.to_string(), t.to_string(), false),
                    [src, t, mode, ..] => (
                        src.to_string(),
                        t.to_string(),
                        mode.split(',').any(|m| m == "ro"),
                    ),
                    [] => continue,
                }
            }
            Value::Object(m) => (
                m.get("source").map(scalar).unwrap_or_default(),
                m.get("target").map(scalar).unwrap_or_default(),
                m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
            ),
            _ => continue,
        };
        let at = format!("volumes[{i}]");
        let bind = source.starts_with('/') || source.starts_with('.') || source.starts_with('~');
        match target.as_str() {
            "/app/data" | "/app/logs" => {
                if target == "/app/data" {
                    data = true
                } else {
                    logs = true
                }
                if read_only {
                    lost(
                        &at,
                        format!(
                            "{target} is mounted read-only in compose; the claim is mounted read-write"
                        ),
                    );
                }
                if bind {
                    claimed.push(source.clone());
                }
            }
            t if t == format!("/tmp/{name}")
                || (t.starts_with("/tmp/") && !bind && !source.is_empty()) =>
            {
                if t != format!("/tmp/{name}") {
                    lost(
                        &at,
                        format!(
                            "cache volume at {t}: the operator mounts the cache at /tmp/{name}"
                        ),
                    );
                }
            }
            t if bind
                && read_only
                && (t.ends_with("/config.yaml") || t.ends_with("/config.yml")) =>
            {
                spec.storage.config = Some(ConfigFileSpec {
                    config_map_name: format!("{name}-config"),
                    key: "config.yaml".into(),
                });
                lost(
                    &at,
                    format!(
                        "config file {source}: create ConfigMap {name}-config with key config.yaml from it (the service waits for it); the operator mounts it at /app/{name}/config.yaml"
                    ),
                );
            }
            t => lost(
                &at,
                format!(
                    "{} at {t}: only /app/data, /app/logs, the /tmp/{name} cache and the config file are mounted",
                    if bind { "host path" } else { "volume" }
                ),
            ),
        }
    }
    if !claimed.is_empty() {
        note(
            "volumes",
            format!(
                "host paths {} become PersistentVolumeClaims: copy their contents into the claims",
                claimed.join(", ")
            ),
        );
    }
    // Without a mount compose loses what the container wrote on recreate; so does an emptyDir.
    if !data {
        spec.storage.data.kind = VolumeKind::EmptyDir;
    }
    if !logs {
        spec.storage.logs.kind = VolumeKind::EmptyDir;
    }
    for (i, t) in seq(s.get("tmpfs")).iter().enumerate() {
        let t = scalar(t);
        let (path, options) = t.split_once(':').unwrap_or((&t, ""));
        if path != "/tmp" {
            lost(
                &format!("tmpfs[{i}]"),
                format!("tmpfs at {path}: only /tmp is a memory emptyDir"),
            );
            continue;
        }
        match options.split(',').find_map(|o| o.strip_prefix("size=")) {
            Some(size) => match quantity(size) {
                Some(q) => spec.storage.tmp_size_limit = q,
                None => lost(
                    &format!("tmpfs[{i}]"),
                    format!("size {size:?} is not a size"),
                ),
            },
            None => note(
                &format!("tmpfs[{i}]"),
                format!(
                    "no size: /tmp is limited to {}",
                    spec.storage.tmp_size_limit
                ),
            ),
        }
    }
}

/// Docker sizes (`100m`, `1g`, `512M`, bytes) as Kubernetes quantities (binary units).
fn quantity(size: &str) -> Option<String> {
    let size = size.trim();
    let digits = size.chars().take_while(char::is_ascii_digit).count();
    let number: u64 = size[..digits].parse().ok()?;
    let unit = match size[digits..].to_ascii_lowercase().trim_end_matches('b') {
        "" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        "t" => "Ti",
        _ => return None,
    };
    Some(format!("{number}{unit}"))
}

/// user, capabilities, read_only and security_opt against the hardening, which always wins.
fn hardening(
    s: &compose::Service,
    spec: &mut LucidServiceSpec,
    lost: &mut impl FnMut(&str, String),
    note: &mut impl FnMut(&str, String),
) {
    if let Some(user) = s.get("user").map(scalar) {
        let (u, g) = user.split_once(':').unwrap_or((&user, &user));
        match (u.parse::<i64>(), g.parse::<i64>()) {
            (Ok(u), Ok(g)) if u > 0 && g > 0 => {
                spec.security.run_as_user = u;
                spec.security.run_as_group = g;
                spec.security.fs_group = g;
            }
            _ if u == "root" || u == "0" || g == "root" || g == "0" => lost(
                "user",
                format!(
                    "{user}: root is refused by the hardening; runs as {}",
                    spec.security.run_as_user
                ),
            ),
            _ => lost(
                "user",
                format!(
                    "{user}: Kubernetes needs a numeric user to check it is not root; runs as {}",
                    spec.security.run_as_user
                ),
            ),
        }
    }
    let low_port = spec.ports.iter().any(|p| p.port < 1024);
    for cap in seq(s.get("cap_add")).iter().map(scalar) {
        match cap.trim_start_matches("CAP_") {
            "NET_BIND_SERVICE" if low_port => {}
            "NET_BIND_SERVICE" => note("cap_add", "NET_BIND_SERVICE: no port below 1024, so not added (the operator adds it only then)".into()),
            other => lost("cap_add", format!("{other}: only NET_BIND_SERVICE may be added")),
        }
    }
    if !seq(s.get("cap_drop")).iter().any(|c| scalar(c) == "ALL") {
        note("cap_drop", "every capability is dropped (hardening)".into());
    }
    if s.get("read_only").and_then(Value::as_bool) != Some(true) {
        note("read_only", "the root filesystem is read-only (hardening); writable paths are /app/data, /app/logs, /tmp and the cache".into());
    }
    for opt in seq(s.get("security_opt")).iter().map(scalar) {
        let (k, v) = opt.split_once([':', '=']).unwrap_or((&opt, ""));
        match (k, v) {
            ("no-new-privileges", "" | "true") => {}
            ("seccomp", "unconfined") => note(
                "security_opt",
                "seccomp:unconfined becomes RuntimeDefault (the restricted Pod Security Standard)"
                    .into(),
            ),
            _ => lost(
                "security_opt",
                format!(
                    "{opt}: not carried over (no-new-privileges and RuntimeDefault seccomp always apply)"
                ),
            ),
        }
    }
}

/// mem_limit, cpus and deploy.resources as requests and limits over the operator's defaults.
/// `r` holds the LucidService's defaults; compose's limits and reservations replace them.
fn resources(
    s: &compose::Service,
    mut r: ResourceRequirements,
    lost: &mut impl FnMut(&str, String),
) -> ResourceRequirements {
    let mut set = |which: &str,
                   res: &str,
                   value: Option<&Value>,
                   key: &str,
                   lost: &mut dyn FnMut(&str, String)| {
        let Some(v) = value else { return };
        let v = scalar(v);
        let q = if res == "memory" {
            quantity(&v)
        } else {
            v.parse::<f64>()
                .ok()
                .map(|c| format!("{}m", (c * 1000.0).round() as i64))
        };
        match q {
            Some(q) => {
                let map = if which == "limits" {
                    r.limits.get_or_insert_with(BTreeMap::new)
                } else {
                    r.requests.get_or_insert_with(BTreeMap::new)
                };
                map.insert(res.into(), Quantity(q));
            }
            None => lost(key, format!("{v:?} is not a {res} amount")),
        }
    };
    set("limits", "memory", s.get("mem_limit"), "mem_limit", lost);
    set(
        "requests",
        "memory",
        s.get("mem_reservation"),
        "mem_reservation",
        lost,
    );
    set("limits", "cpu", s.get("cpus"), "cpus", lost);
    if let Some(Value::Object(deploy)) = s.get("deploy") {
        for (k, v) in deploy {
            match k.clone().as_str() {
                "resources" => {
                    let get = |section: &str, res: &str| {
                        v.get(section).and_then(|s: &Value| s.get(res)).cloned()
                    };
                    set(
                        "limits",
                        "memory",
                        get("limits", "memory").as_ref(),
                        "deploy.resources.limits.memory",
                        lost,
                    );
                    set(
                        "limits",
                        "cpu",
                        get("limits", "cpus").as_ref(),
                        "deploy.resources.limits.cpus",
                        lost,
                    );
                    set(
                        "requests",
                        "memory",
                        get("reservations", "memory").as_ref(),
                        "deploy.resources.reservations.memory",
                        lost,
                    );
                    set(
                        "requests",
                        "cpu",
                        get("reservations", "cpus").as_ref(),
                        "deploy.resources.reservations.cpus",
                        lost,
                    );
                }
                other => lost(
                    &format!("deploy.{other}"),
                    "swarm deploy settings other than resources are not carried over".into(),
                ),
            }
        }
    }
    r
}
