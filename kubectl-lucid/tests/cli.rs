//! kubectl plugin conventions: help with examples, completion scripts for three shells,
//! kubeconfig flags that fail clearly.

mod common;

use common::*;

#[test]
fn help_shows_examples_and_the_kubectl_flags() {
    let o = run(&docker_dir(), &["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for expected in [
        "Usage: kubectl lucid",
        "--kubeconfig <FILE>",
        "--context <NAME>",
        "-n, --namespace <NS>",
        "Examples:",
        "kubectl lucid plan -f lucid",
    ] {
        assert!(help.contains(expected), "{expected:?} in:\n{help}");
    }
    for command in ["import", "plan", "status", "completion"] {
        let o = run(&docker_dir(), &[command, "--help"]);
        assert!(o.status.success(), "{command}");
        assert!(
            stdout(&o).contains("Examples:"),
            "{command} --help has examples"
        );
    }
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kubectl-lucid"),
        ("fish", "complete -c kubectl-lucid"),
    ] {
        let o = run(&docker_dir(), &["completion", shell]);
        assert!(o.status.success(), "{shell}");
        let script = stdout(&o);
        assert!(script.contains(marker), "{shell}: {marker:?} missing");
        assert!(
            script.contains("import") && script.contains("kubeconfig"),
            "{shell} completes commands and flags"
        );
    }
    // The bash script is valid bash.
    let script = stdout(&run(&docker_dir(), &["completion", "bash"]));
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &script])
        .status()
        .unwrap();
    assert!(check.success());
}

#[test]
fn an_unreadable_kubeconfig_is_named() {
    let o = run(
        &docker_dir(),
        &["status", "--kubeconfig", "/nonexistent/kubeconfig"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("kubeconfig: /nonexistent/kubeconfig"), "{err}");
}

#[test]
fn the_krew_manifest_installs_this_binary_at_this_version() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("krew");
    let text = std::fs::read_to_string(dir.join("lucid.yaml")).unwrap();
    let m: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(
        m["metadata"]["name"], "lucid",
        "installed as `kubectl lucid`"
    );
    assert_eq!(
        m["spec"]["version"].as_str().unwrap(),
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    let platforms = m["spec"]["platforms"].as_array().unwrap();
    assert!(!platforms.is_empty());
    for p in platforms {
        assert_eq!(p["bin"], "kubectl-lucid");
        assert!(
            p["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["from"] == "kubectl-lucid")
        );
        // package.sh fills this in with the archive's digest.
        assert_eq!(p["sha256"], "SHA256_OF_THE_ARCHIVE");
    }
    let script = dir.join("package.sh");
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(check.success());
    let packaged = std::fs::read_to_string(&script).unwrap();
    assert!(
        packaged.contains("s/SHA256_OF_THE_ARCHIVE/"),
        "package.sh writes the digest the manifest leaves open"
    );
}
