//! `kubectl lucid import` over compose files written like the seeds' templates: golden
//! manifests, the merged master file, override merging, secrets kept off the terminal, and
//! bad input refused with the file and key named and nothing written.

mod common;

use common::*;

const PHASE_FILES: &[&str] = &[
    "docker-compose.foundation.yml",
    "docker-compose.core.yml",
    "docker-compose.support.yml",
];

#[test]
fn phase_files_import_to_the_golden_manifests_and_report_what_did_not_carry_over() {
    let out = scratch("phases");
    let mut args = vec!["import"];
    args.extend(PHASE_FILES);
    args.extend(["-o", out.to_str().unwrap()]);
    let o = run(&docker_dir(), &args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a lost setting makes the exit code 2: {err}"
    );
    assert!(
        err.contains("not carried over: lucid-mongodb: healthcheck: healthcheck test \"mongosh --quiet --eval db.adminCommand('ping')\""),
        "{err}"
    );
    assert!(
        err.contains("wrote 3 phases, 7 services, 4 ConfigMaps, 7 Secrets"),
        "{err}"
    );
    golden("phases.yaml", &directory_text(&out));
    // .env.support sets LUCID_ENV=staging; the operator's own LUCID_ENV=production would beat
    // envFrom, so the env file's value is pinned in env, by reference.
    let tron = std::fs::read_to_string(out.join("40-lucidservice-tron-client.yaml")).unwrap();
    assert!(
        tron.contains("  - name: LUCID_ENV\n    valueFrom:\n      configMapKeyRef:\n        name: env-support\n        key: LUCID_ENV\n"),
        "{tron}"
    );
    let gateway = std::fs::read_to_string(out.join("40-lucidservice-api-gateway.yaml")).unwrap();
    assert!(
        !gateway.contains("name: LUCID_ENV"),
        "equal values are left to the operator"
    );
    golden("phases.stderr", &err.replace(out.to_str().unwrap(), "OUT"));
    for secret in SECRET_VALUES {
        assert!(!err.contains(secret), "stderr shows a secret value");
    }
    // Secrets are readable by their owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("30-secret-env-secrets.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_master_file_imports_to_the_same_objects_as_the_phase_files() {
    let from_phases = run(&docker_dir(), &[&["import"], PHASE_FILES].concat());
    let from_master = run(&docker_dir(), &["import", "docker-compose.all.yml"]);
    assert_eq!(
        from_master.status.code(),
        Some(2),
        "{}",
        stderr(&from_master)
    );
    // Only the phases' descriptions name the files they came from.
    let strip = |s: String| -> String {
        s.lines()
            .filter(|l| !l.contains("description: Imported from"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    pretty_assertions::assert_eq!(strip(stdout(&from_phases)), strip(stdout(&from_master)));
}

#[test]
fn an_override_file_merges_as_compose_merges_it() {
    let o = run(
        &docker_dir(),
        &[&["import"], PHASE_FILES, &["docker-compose.override.yml"]].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let text = stdout(&o);
    golden("override.yaml", &text);
    // Spot checks of compose's rules (the oracle test holds the whole merged form).
    assert!(
        text.contains("  - name: REDIS_URL\n    value: redis://lucid-redis:6379/1\n"),
        "environment merged by key, the override's value"
    );
    assert!(
        text.contains("name: tcp-8081"),
        "ports merged by container port"
    );
    assert!(
        text.contains("tmpSizeLimit: 64Mi"),
        "the override's tmpfs size"
    );
    assert!(
        text.contains("  resources:\n    limits:\n      memory: 512Mi\n    requests:\n      cpu: 250m\n      memory: 128Mi\n"),
        "mem_limit and deploy.resources.reservations over the defaults"
    );
}

#[test]
fn secret_values_never_reach_a_terminal() {
    // `script` gives the plugin a pseudo-terminal for stdout, as a user's shell would.
    let cmd = format!("{BIN} import {}", PHASE_FILES.join(" "));
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(docker_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("script (util-linux)");
    let shown = stdout(&o);
    assert!(shown.contains("kind: Secret"), "{shown}");
    assert!(
        shown.contains(
            "# Values of ENCRYPTION_MASTER, MONGODB_PASSWORD, REDIS_PASSWORD hidden on a terminal"
        ),
        "{shown}"
    );
    for secret in SECRET_VALUES {
        let b64 = base64(secret);
        assert!(
            !shown.contains(secret) && !shown.contains(&b64),
            "the terminal shows {secret}"
        );
    }
    // Piped, the values are there (for `| kubectl apply -f -`), base64 as Secrets hold them.
    let piped = stdout(&run(&docker_dir(), &[&["import"], PHASE_FILES].concat()));
    assert!(piped.contains(&base64("fixture-mongo-password")));
}

fn base64(s: &str) -> String {
    let json = serde_json::to_string(&k8s_openapi::ByteString(s.as_bytes().to_vec())).unwrap();
    json.trim_matches('"').to_string()
}

/// Each bad input: exit 1, the file and key named, nothing written.
#[test]
fn bad_input_names_the_file_and_key_and_writes_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["unreadable.yml"],
            "unreadable.yml: line 5, column 10: not valid YAML",
        ),
        (
            &["unknown-key.yml"],
            "unknown-key.yml: services.lucid-redis.enviroment: unknown compose key (did you mean environment?)",
        ),
        (
            &["missing-env-file.yml"],
            "missing-env-file.yml: services.lucid-redis.env_file[0]: env file ./environment/.env.nowhere: cannot read env file: no such file",
        ),
        (
            &["missing-required.yml"],
            "missing-required.yml: services.lucid-auth-service.environment[0]: required variable LUCID_TEST_UNSET_MONGODB_URL is missing: MONGODB_URL not set",
        ),
        (
            &["bad-name.yml"],
            "bad-name.yml: services.Lucid_Redis: \"Lucid_Redis\" is not a DNS label",
        ),
        (
            &["conflict-a.yml", "conflict-b.yml"],
            "conflict-b.yml: services.lucid-cache.labels.lucid.cluster: service lucid-cache is already defined in conflict-a.yml in phase foundation; here it is in phase core",
        ),
        (
            &["no-such-file.yml"],
            "no-such-file.yml: cannot read: no such file",
        ),
    ];
    for (files, expected) in cases {
        let out = scratch("bad");
        let args = [&["import"], *files, &["-o", out.to_str().unwrap()]].concat();
        let o = run(&errors_dir(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{files:?}: {err}");
        assert!(
            err.contains(expected),
            "{files:?}: expected {expected:?} in:\n{err}"
        );
        assert!(err.contains("nothing was written"), "{err}");
        assert!(!out.exists(), "{files:?}: {} was written", out.display());
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn settings_a_hardened_service_cannot_carry_are_each_reported() {
    let o = run(&errors_dir(), &["import", "unsupported.yml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for expected in [
        "rdp-xrdp: privileged: privileged containers are refused",
        "rdp-xrdp: network_mode: host or shared network namespaces",
        "rdp-xrdp: devices: host devices",
        "rdp-xrdp: cap_add: SYS_ADMIN: only NET_BIND_SERVICE may be added",
        "rdp-xrdp: user: root: root is refused by the hardening",
        "rdp-monitor: networks.lucid-pi-network.ipv4_address: static IPs",
        "rdp-monitor: healthcheck: healthcheck test \"rdp-probe --local\" is not a form the kubelet can run",
        "7 settings not carried over",
    ] {
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    }
}

#[test]
fn output_directory_is_never_overwritten_or_left_half_written() {
    let out = scratch("exists");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.yaml"), "x").unwrap();
    let o = run(
        &docker_dir(),
        &[&["import"], PHASE_FILES, &["-o", out.to_str().unwrap()]].concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("exists and is not empty"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "nothing added");
    // No temporary directory is left beside it.
    let parent = out.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with(&format!(
                ".{}.tmp-",
                out.file_name().unwrap().to_string_lossy()
            ))
        })
        .collect();
    assert!(leftovers.is_empty());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn env_dir_finds_the_seeds_absolute_env_files_by_name() {
    // The seeds name /mnt/myssd/Lucid/Lucid/configs/environment/.env.*; --env-dir maps them.
    let dir = scratch("envdir");
    std::fs::create_dir_all(&dir).unwrap();
    let compose = "services:\n  lucid-redis:\n    image: pickme/lucid-redis:latest-arm64\n    env_file:\n      - /mnt/myssd/Lucid/Lucid/configs/environment/.env.foundation\n      - /mnt/myssd/Lucid/Lucid/configs/environment/.env.secrets\n    expose: [\"6379\"]\n    labels: [lucid.cluster=foundation]\n";
    std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
    let env_dir = fixtures().join("lucid/configs/environment");
    let without = run(&dir, &["import", "docker-compose.yml"]);
    assert_eq!(without.status.code(), Some(1));
    assert!(stderr(&without).contains("services.lucid-redis.env_file[0]: env file /mnt/myssd/Lucid/Lucid/configs/environment/.env.foundation"));
    let with = run(
        &dir,
        &[
            "import",
            "docker-compose.yml",
            "--env-dir",
            env_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(with.status.code(), Some(0), "{}", stderr(&with));
    let text = stdout(&with);
    assert!(
        text.contains("configMapRef:\n      name: env-foundation")
            && text.contains("secretRef:\n      name: env-secrets"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_sharing_settings_through_merge_keys_imports() {
    // Was refused with `services.audit-log.<<: unknown compose key`.
    let o = run(&docker_dir(), &["import", "docker-compose.anchors.yml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(!stderr(&o).contains("<<"), "{}", stderr(&o));
    assert!(text.contains("name: audit-log") && text.contains("name: notifier"));
    assert!(
        text.contains("  - name: LOG_LEVEL\n    value: DEBUG\n"),
        "the service's own key wins over the merged one:\n{text}"
    );
    assert!(
        text.contains("runAsUser: 65532") && text.contains("readOnlyRootFilesystem: true"),
        "the hardening merged from x-hardened:\n{text}"
    );
}
