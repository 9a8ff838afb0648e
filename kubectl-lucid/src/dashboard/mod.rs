//! `kubectl lucid dashboard`: the rollout as a live web page served by the plugin itself,
//! with the user's kubeconfig (nothing runs in the cluster, no new RBAC). Watches of the
//! namespace's LucidPhases, LucidServices, Pods and Events feed one state; every change is
//! pushed to the page as a snapshot over server-sent events within a fraction of a second.
//! When the API server goes away the watches retry with backoff and the page says so.

pub mod server;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use lucid_operator::api::{LucidPhase, LucidService};
use tokio::sync::watch;

use crate::cli::{DashboardArgs, KubeArgs};
use crate::error::{Error, Result};
use state::State;

/// Changes arriving together (a rollout step touches several objects) make one snapshot;
/// the page still sees each change well within a second.
const COALESCE: Duration = Duration::from_millis(100);

pub fn run(k: &KubeArgs, args: &DashboardArgs) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Kubeconfig(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(k, args))
}

enum Change {
    Phase(Event<DynamicObject>),
    Service(Event<DynamicObject>),
    Pod(Box<Event<Pod>>),
    Event(Box<Event<K8sEvent>>),
}

async fn run_async(k: &KubeArgs, args: &DashboardArgs) -> Result<u8> {
    let (client, namespace) = crate::status::client(k).await?;
    let phase_resource = ApiResource::erase::<LucidPhase>(&());
    let service_resource = ApiResource::erase::<LucidService>(&());
    let phases: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &phase_resource);
    let services: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &service_resource);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), &namespace);

    // One list first: a missing CRD or a forbidden namespace is an error now, not a page
    // that waits for ever.
    services.list(&Default::default()).await.map_err(|e| match &e {
        kube::Error::Api(s) if s.code == 404 => Error::Kubeconfig(format!(
            "the Lucid CRDs are not installed in this cluster (install the lucid-operator chart): {e}"
        )),
        _ => Error::Kube(e),
    })?;

    let state = Arc::new(Mutex::new(State {
        namespace: namespace.clone(),
        ..Default::default()
    }));
    let first = snapshot(&state);
    let (tx, rx) = watch::channel(Arc::new(first));

    let listener = tokio::net::TcpListener::bind((args.address, args.port))
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "cannot listen on {}:{}: {e}",
                args.address, args.port
            ))
        })?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("cannot read the listening address: {e}")))?;
    let shared = server::Shared {
        state: state.clone(),
        snapshots: rx,
        hosts: Arc::new(server::allowed_hosts(addr)),
    };
    let url = format!("http://{addr}/");
    if !args.address.is_loopback() {
        eprintln!(
            "warning: serving on {addr}, not loopback: anyone who can reach it sees namespace {namespace} as your kubeconfig does"
        );
    }
    println!("kubectl lucid dashboard: namespace {namespace} at {url} (Ctrl-C to stop)");
    if args.open {
        open(&url);
    }

    let cfg = watcher::Config::default();
    let streams = futures::stream::select_all(vec![
        watcher::watcher(phases, cfg.clone())
            .default_backoff()
            .map_ok(Change::Phase)
            .boxed(),
        watcher::watcher(services, cfg.clone())
            .default_backoff()
            .map_ok(Change::Service)
            .boxed(),
        watcher::watcher(pods, cfg.clone().labels("lucid.io/service"))
            .default_backoff()
            .map_ok(|e| Change::Pod(Box::new(e)))
            .boxed(),
        watcher::watcher(events, cfg)
            .default_backoff()
            .map_ok(|e| Change::Event(Box::new(e)))
            .boxed(),
    ]);
    let watching = tokio::spawn(watch_loop(streams, state, tx));
    let serving = axum::serve(listener, server::router(shared)).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    let result = serving.await;
    watching.abort();
    result
        .map(|()| 0)
        .map_err(|e| Error::Usage(format!("the dashboard's server stopped: {e}")))
}

fn snapshot(state: &Mutex<State>) -> String {
    state
        .lock()
        .map(|s| s.snapshot().to_string())
        .unwrap_or_default()
}

async fn watch_loop(
    streams: impl futures::Stream<Item = std::result::Result<Change, watcher::Error>>,
    state: Arc<Mutex<State>>,
    tx: watch::Sender<Arc<String>>,
) {
    tokio::pin!(streams);
    let mut relist_phases: Option<BTreeMap<String, DynamicObject>> = None;
    let mut relist_services: Option<BTreeMap<String, DynamicObject>> = None;
    let mut relist_pods: Option<BTreeMap<String, Pod>> = None;
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let next = match due {
            Some(at) => match tokio::time::timeout_at(at, streams.next()).await {
                Ok(next) => next,
                Err(_) => {
                    due = None;
                    let _ = tx.send(Arc::new(snapshot(&state)));
                    continue;
                }
            },
            None => streams.next().await,
        };
        let Some(change) = next else { return };
        let Ok(mut s) = state.lock() else { return };
        let changed = match change {
            Err(e) => {
                // The watch retries with backoff; the page says the API server is away. At
                // once: a loss is news as much as a change is.
                if s.api_down(reason(&e)) {
                    drop(s);
                    let _ = tx.send(Arc::new(snapshot(&state)));
                }
                continue;
            }
            Ok(change) => {
                s.api_up();
                match change {
                    Change::Phase(e) => {
                        crate::status::apply(e, &mut s.phases, &mut relist_phases);
                    }
                    Change::Service(e) => {
                        crate::status::apply(e, &mut s.services, &mut relist_services);
                    }
                    Change::Pod(e) => crate::status::apply(*e, &mut s.pods, &mut relist_pods),
                    Change::Event(e) => {
                        if let Event::Apply(e) | Event::InitApply(e) = *e {
                            s.note_event(&e);
                        }
                    }
                }
                true
            }
        };
        drop(s);
        if changed && due.is_none() {
            due = Some(tokio::time::Instant::now() + COALESCE);
        }
    }
}

/// What the page shows when the API server cannot be reached: the cause, without detail that
/// could carry a token.
fn reason(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(s) => format!("API server: {} ({})", s.message, s.code),
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                "cannot reach the API server".into()
            }
            other => format!("API server: {other}"),
        },
        watcher::Error::WatchError(s) => format!("watch: {} ({})", s.message, s.code),
        other => format!("watch: {other}"),
    }
}

/// `--open`: the desktop's opener; the URL is printed either way.
fn open(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("note: could not start {opener} ({e}); open {url} yourself");
    }
}
