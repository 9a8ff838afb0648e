//! `kubectl lucid`: import docker-compose files as Lucid resources, plan the rollout with no
//! cluster, watch it live. Every rule (types, graph, rendering) is the operator's own.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use kubectl_lucid::cli::{self, Cli, Command, Format, ImportArgs, PlanArgs};
use kubectl_lucid::error::{Error, Result};
use kubectl_lucid::{
    compose, dashboard, graph, import, manifests, output, plan, render, retry, status,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Import(args) => import_command(&args),
        Command::Plan(args) => plan_command(&args, &cli.kube),
        Command::Status(args) => status::run(&cli.kube, &args),
        Command::Retry(args) => retry::run(&cli.kube, &args),
        Command::Dashboard(args) => dashboard::run(&cli.kube, &args),
        Command::Completion { shell } => {
            let shell = match shell {
                cli::Shell::Bash => clap_complete::Shell::Bash,
                cli::Shell::Zsh => clap_complete::Shell::Zsh,
                cli::Shell::Fish => clap_complete::Shell::Fish,
            };
            // Completes `kubectl-lucid`; kubectl's own plugin completion calls it by that name.
            // Into memory first (cannot fail), so a closed pipe is an error, not a panic.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kubectl-lucid", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .map(|()| 0)
                .map_err(|source| Error::Write {
                    path: "(stdout)".into(),
                    source,
                })
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// 0: all carried over; 2: written, with losses listed; errors: nothing written.
fn import_command(args: &ImportArgs) -> Result<u8> {
    let dir = args
        .files
        .first()
        .and_then(|f| f.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let vars =
        compose::variables(&dir, args.env_file.as_deref()).map_err(|p| Error::Invalid(vec![p]))?;
    let project = compose::load(&args.files, &vars).map_err(Error::Invalid)?;
    for warning in &project.blanks {
        eprintln!("warning: {warning}");
    }
    let options = import::Options {
        env_dir: args.env_dir.clone(),
    };
    let imported = import::import(&project, &options).map_err(Error::Invalid)?;
    let hide = args.output.is_none() && std::io::stdout().is_terminal();
    let docs = output::documents(&imported, hide)?;
    match &args.output {
        Some(dir) => output::to_directory(dir, &docs)?,
        None => output::to_stdout(&docs)?,
    }
    for n in &imported.notes {
        eprintln!("note: {n}");
    }
    for l in &imported.lost {
        eprintln!("not carried over: {l}");
    }
    let summary = format!(
        "{} phase{}, {} service{}, {} ConfigMap{}, {} Secret{}",
        imported.phases.len(),
        plural(imported.phases.len()),
        imported.services.len(),
        plural(imported.services.len()),
        imported.config_maps.len(),
        plural(imported.config_maps.len()),
        imported.secrets.len(),
        plural(imported.secrets.len()),
    );
    match &args.output {
        Some(dir) => eprintln!("wrote {summary} to {}", dir.display()),
        None => eprintln!("{summary}"),
    }
    if imported.lost.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "{} setting{} not carried over (see above)",
            imported.lost.len(),
            plural(imported.lost.len())
        );
        Ok(2)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn plan_command(args: &PlanArgs, kube: &cli::KubeArgs) -> Result<u8> {
    let m = manifests::read(&args.files).map_err(Error::Invalid)?;
    for s in &m.skipped {
        eprintln!("note: skipped {s}");
    }
    let plan = plan::plan(&m);
    if args.render && matches!(args.output, Format::Dot | Format::Svg) {
        return Err(Error::Usage(
            "--render prints objects, not a graph: use -o yaml or -o json with it".into(),
        ));
    }
    if args.render {
        let namespace = kube.namespace.clone().unwrap_or_else(|| "default".into());
        let order: Vec<String> = plan
            .phases
            .iter()
            .flat_map(|p| p.services.iter().map(|s| s.name.clone()))
            .collect();
        let objects = render::rendered(&m, &order, &namespace)?;
        let text = match args.output {
            Format::Json => {
                serde_json::to_string_pretty(
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
                )
                .map_err(|e| Error::Serialise {
                    what: "the rendered objects".into(),
                    message: e.to_string(),
                })? + "\n"
            }
            _ => {
                let mut s = String::new();
                for o in &objects {
                    s.push_str("---\n");
                    s.push_str(
                        &lucid_operator::api::to_yaml(o).map_err(|e| Error::Serialise {
                            what: "a rendered object".into(),
                            message: e.to_string(),
                        })?,
                    );
                }
                s
            }
        };
        print!("{text}");
    } else {
        let text = match args.output {
            Format::Text => plan::text(&plan, &m),
            Format::Yaml => lucid_operator::api::to_yaml(&plan).map_err(|e| Error::Serialise {
                what: "the plan".into(),
                message: e.to_string(),
            })?,
            Format::Json => {
                serde_json::to_string_pretty(&plan).map_err(|e| Error::Serialise {
                    what: "the plan".into(),
                    message: e.to_string(),
                })? + "\n"
            }
            Format::Dot => graph::dot::dot(&graph::Graph::of(&plan, &m)),
            Format::Svg => graph::svg::svg(&graph::layout(&graph::Graph::of(&plan, &m)), false),
        };
        print!("{text}");
    }
    if plan.errors.is_empty() {
        Ok(0)
    } else {
        if args.output != Format::Text || args.render {
            for e in &plan.errors {
                eprintln!("error: {}: {}: {}", e.object, e.reason, e.message);
            }
        }
        Ok(1)
    }
}
