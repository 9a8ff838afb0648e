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
