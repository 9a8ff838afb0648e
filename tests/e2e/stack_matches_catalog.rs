//! The lucid-stack chart: its values restate the design catalog (`../shared/lucid-catalog.yaml`);
//! what it renders (by the real Helm engine, with default and override values) is valid
//! against the CRDs, follows the compose env file order, fits the programs it runs, and,
//! through the operator's own render functions, keeps the TRON services isolated whether or
//! not the databases are exposed.
//!
//! No API server is involved: the CRD schema is checked by `stack::crd_schema` and the
//! NetworkPolicies are evaluated by `stack::policy`.

mod stack;

use std::collections::{BTreeMap, BTreeSet};

use lucid_operator::api::LucidService;
use lucid_operator::reconcile::references;
use lucid_operator::render::{RenderInputs, render};
use serde_json::Value;
use stack::policy::{Pod, Policies};
use stack::{NAMESPACE, ROOT, crd_schema::Crds, helm_run, lucid_services, name, of_kind, template};

/// The databases: compose published their ports on the host (catalog `external: true`).
/// The chart may keep that (NodePort) or make them ClusterIP; TRON reaches them either way
/// (see `with_cluster_ip_databases_*`).
const DATABASES: &[&str] = &["lucid-mongodb", "lucid-redis"];
const TRON_NETWORK: &str = "lucid-tron-isolated";
const CLUSTER_IP_DATABASES: &[&str] = &[
    "services.lucid-mongodb.service.type=ClusterIP",
    "services.lucid-redis.service.type=ClusterIP",
];

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn ports(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|s| s.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

fn values() -> Value {
    serde_saphyr::from_str(
        &std::fs::read_to_string(format!("{ROOT}/charts/lucid-stack/values.yaml")).unwrap(),
    )
    .unwrap()
}

fn catalog() -> Option<Value> {
    let path = format!("{ROOT}/../shared/lucid-catalog.yaml");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_saphyr::from_str(&text).unwrap()),
        Err(_) => {
            eprintln!("skipping: no catalog at {path}");
            None
        }
    }
}

/// The catalog's env file list of a phase with `(optional)` notes dropped, and the chart's,
/// as compose file names (`.env.foundation`, `.env.<service-name>`).
fn catalog_env_files(phase: &Value) -> Vec<String> {
    strings(&phase["envFiles"])
        .into_iter()
        .map(|f| f.trim_end_matches(" (optional)").to_string())
        .collect()
}

fn chart_env_files(values: &Value, phase: &str) -> Vec<String> {
    strings(&values["phases"][phase]["envFiles"])
        .iter()
        .map(|key| {
            values["envFiles"][key.as_str()]["file"]
                .as_str()
                .unwrap_or_else(|| panic!("envFiles.{key} has no file"))
                .to_string()
        })
        .collect()
}

#[test]
fn the_stack_chart_has_the_catalogs_phases_services_dependencies_ports_networks_and_env_files() {
    let Some(catalog) = catalog() else { return };
    let values = values();
    let chart_services = values["services"].as_object().unwrap();
    let mut previous: Option<String> = None;
    let mut count = 0;
    let mut phases = catalog["phases"].as_array().unwrap().clone();
    phases.sort_by_key(|p| p["order"].as_i64());
    for phase in &phases {
        let name = phase["name"].as_str().unwrap();
        let chart_phase = &values["phases"][name];
        assert!(chart_phase.is_object(), "phase {name} missing");
        assert_eq!(
            strings(&chart_phase["dependsOn"]),
            previous.iter().cloned().collect::<Vec<_>>(),
            "phase {name} order"
        );
        assert_eq!(
            chart_env_files(&values, name),
            catalog_env_files(phase),
            "phase {name}: env files in the compose order"
        );
        previous = Some(name.to_string());
        for svc in phase["services"].as_array().unwrap() {
            count += 1;
            let sname = svc["name"].as_str().unwrap();
            let chart = &values["services"][sname];
            assert!(chart.is_object(), "{sname} missing from the chart");
            assert_eq!(chart["phase"].as_str(), Some(name), "{sname} phase");
            assert_eq!(
                strings(&chart["dependsOn"]),
                strings(&svc["dependsOn"]),
                "{sname} dependsOn"
            );
            if !svc["ports"].is_null() {
                assert_eq!(
                    ports(&chart["ports"]),
                    ports(&svc["ports"]),
                    "{sname} ports"
                );
                assert!(
                    chart["portsChosen"].is_null(),
                    "{sname}: port is from the catalog, not chosen"
                );
            } else {
                assert!(!ports(&chart["ports"]).is_empty(), "{sname}: no port");
                assert_eq!(
                    chart["portsChosen"].as_bool(),
                    Some(true),
                    "{sname}: a port the catalog lacks must be marked portsChosen"
                );
            }
            let service_type = chart["service"]["type"].as_str().unwrap_or("ClusterIP");
            let external = svc["external"].as_bool().unwrap_or(false);
            let allowed: &[&str] = match (external, DATABASES.contains(&sname)) {
                (true, true) => &["NodePort", "LoadBalancer", "ClusterIP"],
                (true, false) => &["NodePort", "LoadBalancer"],
                (false, _) => &["ClusterIP"],
            };
            assert!(
                allowed.contains(&service_type),
                "{sname}: service type {service_type}, catalog external: {external}"
            );
            let chart_networks = match strings(&chart["networks"]) {
                n if n.is_empty() => vec!["lucid-pi-network".to_string()],
                n => n,
            };
            assert_eq!(
                chart_networks,
                [svc["network"].as_str().unwrap_or("lucid-pi-network")],
                "{sname} networks"
            );
        }
    }
    assert_eq!(count, 27);
    assert_eq!(chart_services.len(), 27);
}

#[test]
fn helm_lint_strict_passes() {
    helm_run(&["lint", "--strict"], &[]).unwrap_or_else(|e| panic!("helm lint: {e}"));
}

/// Default values, then each kind of override the chart supports.
const SCENARIOS: &[&[&str]] = &[
    &[],
    CLUSTER_IP_DATABASES,
    &["phases.support.enabled=false"],
    &["phases.application.enabled=false"],
    &[
        "services.api-gateway.replicas=2",
        "services.api-gateway.image.tag=v2",
        "services.api-gateway.resources.limits.memory=512Mi",
        "services.api-gateway.healthCheck.path=/ready",
        "services.api-gateway.env.LOG_LEVEL=DEBUG",
        "services.api-gateway.env.SERVICE_RETRY_COUNT=5",
        "services.api-gateway.service.type=LoadBalancer",
        "services.lucid-mongodb.storage.data.size=20Gi",
        "services.lucid-mongodb.storage.data.storageClassName=ssd",
        "storage.storageClassName=local-path",
        "services.admin-interface.enabled=false",
        "services.rdp-xrdp.replicas=0",
    ],
];

#[test]
fn every_rendered_custom_resource_is_valid_against_its_crd_and_the_operators_checks() {
    let crds = Crds::load();
    for sets in SCENARIOS {
        let docs = template(sets).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
        assert!(!docs.is_empty());
        for doc in &docs {
            let kind = doc["kind"].as_str().unwrap_or_default();
            assert!(
                ["LucidService", "LucidPhase"].contains(&kind),
                "{sets:?}: unexpected {kind}"
            );
            let json: serde_json::Value = serde_json::to_value(doc).unwrap();
            assert_eq!(
                crds.problems(&json),
                Vec::<String>::new(),
                "{sets:?}: {kind} {}",
                name(doc)
            );
        }
        for ls in lucid_services(&docs) {
            assert_eq!(
                lucid_operator::validate::problems(&ls),
                Vec::<String>::new(),
                "{sets:?}: {}",
                ls.metadata.name.as_deref().unwrap()
            );
        }
    }
}

#[test]
fn the_crd_check_catches_what_the_api_server_would_refuse() {
    // The checker itself: a wrong type, an unknown enum value, a broken pattern, an unknown
    // field are all reported.
    let crds = Crds::load();
    let bad = serde_json::json!({
        "apiVersion": "lucid.io/v1alpha1", "kind": "LucidService",
        "metadata": {"name": "x"},
        "spec": {
            "image": {"repository": "x"}, "phase": "Core", "replicas": "two",
            "healthCheck": {"kind": "Exec"}, "healthcheck": {}
        }
    });
    let problems = crds.problems(&bad);
    for expected in [
        ".spec.phase",
        ".spec.replicas",
        ".spec.healthCheck.kind",
        ".spec.healthcheck",
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{expected}:"))),
            "{expected} not reported in {problems:?}"
        );
    }
}

fn by_name(docs: &[Value], kind: &str) -> BTreeMap<String, Value> {
    of_kind(docs, kind)
        .into_iter()
        .map(|d| (name(d).to_string(), d.clone()))
        .collect()
}

#[test]
fn overriding_one_field_of_one_service_changes_only_that_field() {
    let before = by_name(&template(&[]).unwrap(), "LucidService");
    let after = by_name(
        &template(&["services.api-gateway.replicas=2"]).unwrap(),
        "LucidService",
    );
    assert_eq!(before.len(), 27);
    for (name, doc) in &before {
        let mut expected = doc.clone();
        if name == "api-gateway" {
            expected["spec"]
                .as_object_mut()
                .unwrap()
                .insert("replicas".into(), 2.into());
        }
        assert_eq!(after[name], expected, "{name}");
    }
}

#[test]
fn switching_a_phase_off_renders_neither_it_nor_its_services_and_keeps_the_others_in_order() {
    let docs = template(&["phases.support.enabled=false"]).unwrap();
    let phases = by_name(&docs, "LucidPhase");
    assert_eq!(
        phases.keys().collect::<Vec<_>>(),
        ["application", "core", "foundation"]
    );
    let services = by_name(&docs, "LucidService");
    assert_eq!(services.len(), 20);
    assert!(
        services
            .values()
            .all(|s| s["spec"]["phase"].as_str() != Some("support"))
    );

    // A phase after a switched-off one waits for that phase's own dependencies.
    let docs = template(&["phases.application.enabled=false"]).unwrap();
    let phases = by_name(&docs, "LucidPhase");
    assert!(!phases.contains_key("application"));
    assert_eq!(strings(&phases["support"]["spec"]["dependsOn"]), ["core"]);
    assert_eq!(by_name(&docs, "LucidService").len(), 17);
}

#[test]
fn a_service_depending_on_one_switched_off_fails_the_render_saying_what_to_change() {
    let err = template(&["phases.core.enabled=false"]).unwrap_err();
    assert!(
        err.contains("services.session-api depends on api-gateway, which is off (phases.core.enabled is false): switch session-api off too, switch api-gateway on, or remove it from services.session-api.dependsOn"),
        "{err}"
    );
    let err = template(&["services.lucid-elasticsearch.enabled=false"]).unwrap_err();
    assert!(
        err.contains("services.lucid-auth-service depends on lucid-elasticsearch, which is off (services.lucid-elasticsearch.enabled is false)"),
        "{err}"
    );
    // Switching the dependents off too is fine: the foundation alone.
    let docs = template(&[
        "phases.core.enabled=false",
        "phases.application.enabled=false",
        "phases.support.enabled=false",
    ])
    .unwrap();
    assert_eq!(by_name(&docs, "LucidService").len(), 4);
    let err = template(&["services.tron-client.phase=payments"]).unwrap_err();
    assert!(
        err.contains("services.tron-client.phase: payments is not one of phases"),
        "{err}"
    );
}

#[test]
fn a_value_of_the_wrong_type_or_a_misspelt_key_fails_the_render_naming_it() {
    for (set, expected) in [
        (
            "services.api-gateway.replicas=two",
            "/services/api-gateway/replicas",
        ),
        (
            "services.api-gateway.replica=2",
            "additional properties 'replica'",
        ),
        (
            "services.api-gateway.service.type=Public",
            "/services/api-gateway/service/type",
        ),
        (
            "services.api-gateway.healthCheck.kind=Exec",
            "/services/api-gateway/healthCheck/kind",
        ),
        ("phases.support.enabled=no", "/phases/support/enabled"),
        (
            "services.api-gateway.resources.limits.memory=lots",
            "/services/api-gateway/resources/limits/memory",
        ),
    ] {
        let err = template(&[set]).expect_err(set);
        assert!(err.contains(expected), "{set}: {err}");
    }
}

#[test]
fn env_files_follow_each_phases_compose_order_and_only_the_required_ones_hold_the_rollout() {
    let Some(catalog) = catalog() else { return };
    let values = values();
    // compose file -> (object name with {service}, kind, optional)
    let files: BTreeMap<String, (String, String, bool)> = values["envFiles"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["kind"].as_str().unwrap().to_string(),
                    f["optional"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect();
    let phase_files: BTreeMap<String, Vec<String>> = catalog["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                catalog_env_files(p),
            )
        })
        .collect();

    // Every service needs the object that carries MONGODB_URL in the install's environment.
    let environment =
        std::fs::read_to_string(format!("{ROOT}/crds/examples/environment.yaml")).unwrap();
    let carriers: Vec<String> = serde_saphyr::from_multiple::<serde_json::Value>(&environment)
        .expect("YAML")
        .into_iter()
        .filter(|d| {
            !d["data"]["MONGODB_URL"].is_null() || !d["stringData"]["MONGODB_URL"].is_null()
        })
        .map(|d| name(&d).to_string())
        .collect();
    assert!(!carriers.is_empty(), "environment.yaml sets MONGODB_URL");

    let docs = template(&[]).unwrap();
    for ls in lucid_services(&docs) {
        let sname = ls.metadata.name.clone().unwrap();
        let expected: Vec<(String, bool, bool)> = phase_files[&ls.spec.phase]
            .iter()
            .map(|file| {
                let (object, kind, optional) = &files[file];
                (
                    object.replace("{service}", &sname),
                    kind == "Secret",
                    *optional,
                )
            })
            .collect();
        let rendered: Vec<(String, bool, bool)> = ls
            .spec
            .env_from
            .iter()
            .map(
                |source| match (&source.config_map_ref, &source.secret_ref) {
                    (Some(r), None) => (r.name.clone(), false, r.optional),
                    (None, Some(r)) => (r.name.clone(), true, r.optional),
                    _ => panic!("{sname}: envFrom needs one of configMapRef, secretRef"),
                },
            )
            .collect();
        assert_eq!(rendered, expected, "{sname}: envFrom in the compose order");

        // What the operator holds the rollout for (MissingConfigMap / MissingSecret): the
        // MONGODB_URL carrier and the secrets, nothing optional.
        let required: BTreeSet<String> = references(&ls)
            .into_iter()
            .filter(|r| !r.optional)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            required,
            BTreeSet::from([
                "lucid-env-foundation".to_string(),
                "lucid-secrets".to_string()
            ]),
            "{sname}"
        );
        for carrier in &carriers {
            assert!(required.contains(carrier), "{sname} must require {carrier}");
        }
    }
}

fn quantity_bytes(q: &str) -> u64 {
    let (number, unit) = q.split_at(q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len()));
    let factor = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other}"),
    };
    number.parse::<u64>().unwrap() * factor
}

#[test]
fn every_service_states_resources_and_a_health_check_that_fit_its_program() {
    let docs = template(&[]).unwrap();
    for doc in of_kind(&docs, "LucidService") {
        let spec = &doc["spec"];
        assert!(
            spec["resources"]["limits"]["memory"].is_string(),
            "{}: memory limit",
            name(doc)
        );
        assert!(
            spec["resources"]["requests"]["memory"].is_string(),
            "{}: memory request",
            name(doc)
        );
        assert!(
            spec["healthCheck"]["kind"].is_string(),
            "{}: health check",
            name(doc)
        );
    }
    let services: BTreeMap<String, LucidService> = lucid_services(&docs)
        .into_iter()
        .map(|ls| (ls.metadata.name.clone().unwrap(), ls))
        .collect();
    let container = |name: &str| {
        let children = render(&services[name], &RenderInputs::default()).unwrap();
        children
            .deployment
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .clone()
    };
    let http = |name: &str| {
        let probe = container(name).readiness_probe.expect("a readiness probe");
        let get = probe.http_get.expect("an HTTP probe");
        (get.path.unwrap(), get.port)
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int;
    assert_eq!(
        http("lucid-elasticsearch"),
        ("/_cluster/health".into(), Int(9200))
    );
    assert_eq!(
        http("service-mesh"),
        ("/v1/status/leader".into(), Int(8500))
    );
    assert_eq!(http("api-gateway"), ("/health".into(), Int(8080)));
    for db in ["lucid-mongodb", "lucid-redis"] {
        let probe = container(db).readiness_probe.unwrap();
        assert!(
            probe.tcp_socket.is_some() && probe.http_get.is_none(),
            "{db}: TCP"
        );
    }
    // Elasticsearch's heap is half its limit, and the limit is well above 1 GiB.
    let es = container("lucid-elasticsearch");
    let limit = es.resources.unwrap().limits.unwrap()["memory"].0.clone();
    assert!(quantity_bytes(&limit) >= 2 << 30, "{limit}");
    let heap = es
        .env
        .unwrap()
        .into_iter()
        .find(|e| e.name == "ES_JAVA_OPTS")
        .and_then(|e| e.value)
        .unwrap();
    assert_eq!(heap, "-Xms1g -Xmx1g");
}

// --- TRON isolation -----------------------------------------------------------------------
// The bridge CNI of our real-cluster harness does not enforce NetworkPolicy (k3s's
// kube-router does), so isolation is shown by evaluating the rendered policies: the chart
// rendered by Helm, each LucidService rendered by the operator's own `render`, every
// connection between their pods evaluated by `stack::policy`.

struct Stack {
    services: BTreeMap<String, LucidService>,
    pods: BTreeMap<String, Pod>,
    policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>,
}

impl Stack {
    fn render(sets: &[&str]) -> Stack {
        let docs = template(sets).unwrap();
        let (mut services, mut pods, mut policies) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
        for ls in lucid_services(&docs) {
            let sname = ls.metadata.name.clone().unwrap();
            let children = render(&ls, &RenderInputs::default()).unwrap();
            let labels = children
                .deployment
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .labels
                .unwrap();
            pods.insert(
                sname.clone(),
                Pod {
                    name: sname.clone(),
                    namespace: NAMESPACE.into(),
                    labels,
                },
            );
            policies.push(children.network_policy);
            services.insert(sname, ls);
        }
        Stack {
            services,
            pods,
            policies,
        }
    }

    fn policies(&self) -> Policies<'_> {
        Policies {
            policies: &self.policies,
        }
    }

    fn is_tron(&self, name: &str) -> bool {
        self.services[name]
            .spec
            .networks
            .iter()
            .any(|n| n == TRON_NETWORK)
    }

    fn is_external(&self, name: &str) -> bool {
        self.services[name].spec.service.type_.is_external()
    }

    /// Every (service, port) of the stack a pod can open a connection to.
    fn reachable_from(&self, from: &Pod) -> BTreeSet<(String, i32)> {
        let mut out = BTreeSet::new();
        for (to_name, to) in &self.pods {
            if to_name == &from.name {
                continue;
            }
            for port in &self.services[to_name].spec.ports {
                if self
                    .policies()
                    .connects(from, to, port.port, port.protocol.as_str())
                {
                    out.insert((to_name.clone(), port.port));
                }
            }
        }
        out
    }
}

fn pod(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        name: name.into(),
        namespace: namespace.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Each TRON service reaches exactly its dependencies, the other TRON services (they share
/// the isolated network, as in compose) and DNS; nothing outside the stack.
fn assert_tron_reaches_exactly_its_dependencies_its_network_and_dns(stack: &Stack) {
    let dns = pod("coredns", "kube-system", &[("k8s-app", "kube-dns")]);
    let internet = pod("somewhere", "default", &[]);
    let mut checked = 0;
    for (name, from) in stack.pods.iter().filter(|(n, _)| stack.is_tron(n)) {
        let expected: BTreeSet<(String, i32)> = stack
            .services
            .iter()
            .filter(|(other, ls)| {
                *other != name
                    && (stack.services[name].spec.depends_on.contains(other)
                        || stack.is_tron(other))
                    && !ls.spec.ports.is_empty()
            })
            .flat_map(|(other, ls)| ls.spec.ports.iter().map(move |p| (other.clone(), p.port)))
            .collect();
        assert_eq!(stack.reachable_from(from), expected, "{name}");
        let policies = stack.policies();
        assert!(policies.connects(from, &dns, 53, "UDP"), "{name}: DNS");
        assert!(
            policies.connects(from, &dns, 53, "TCP"),
            "{name}: DNS over TCP"
        );
        assert!(
            !policies.connects(from, &internet, 443, "TCP"),
            "{name}: nothing else"
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "the six TRON services");
}

/// Nothing off the TRON network opens a TRON port, except an external service's ports.
fn assert_tron_ports_closed_to_others_unless_external(stack: &Stack) {
    let outsiders = [
        pod("not-lucid", NAMESPACE, &[]),
        pod("elsewhere", "default", &[]),
    ];
    let others = stack
        .pods
        .values()
        .filter(|p| !stack.is_tron(&p.name))
        .chain(outsiders.iter());
    let policies = stack.policies();
    for from in others {
        for (to_name, to) in stack.pods.iter().filter(|(n, _)| stack.is_tron(n)) {
            for port in &stack.services[to_name].spec.ports {
                assert_eq!(
                    policies.connects(from, to, port.port, "TCP"),
                    stack.is_external(to_name),
                    "{} -> {to_name}:{}",
                    from.name,
                    port.port
                );
            }
        }
    }
}

#[test]
fn with_cluster_ip_databases_tron_services_reach_exactly_their_dependencies_and_stay_isolated() {
    let stack = Stack::render(CLUSTER_IP_DATABASES);
    for db in DATABASES {
        assert!(!stack.is_external(db), "{db} is ClusterIP here");
    }
    assert_tron_reaches_exactly_its_dependencies_its_network_and_dns(&stack);
    assert_tron_ports_closed_to_others_unless_external(&stack);
    // ClusterIP databases are closed to pods outside the stack's networks and dependents.
    let policies = stack.policies();
    for db in DATABASES {
        let port = stack.services[*db].spec.ports[0].port;
        for outsider in [
            pod("not-lucid", NAMESPACE, &[]),
            pod("elsewhere", "default", &[]),
        ] {
            assert!(
                !policies.connects(&outsider, &stack.pods[*db], port, "TCP"),
                "{} -> {db}",
                outsider.name
            );
        }
    }
}

#[test]
fn with_the_default_node_port_databases_tron_isolation_is_the_same() {
    let stack = Stack::render(&[]);
    assert_tron_reaches_exactly_its_dependencies_its_network_and_dns(&stack);
    assert_tron_ports_closed_to_others_unless_external(&stack);
}

#[test]
fn a_tron_service_that_drops_a_database_from_depends_on_loses_its_path_to_it() {
    let stack = Stack::render(&[
        "services.lucid-mongodb.service.type=ClusterIP",
        "services.tron-staking.dependsOn={lucid-redis}",
    ]);
    let policies = stack.policies();
    let (staking, client, mongodb) = (
        &stack.pods["tron-staking"],
        &stack.pods["tron-client"],
        &stack.pods["lucid-mongodb"],
    );
    assert!(!policies.connects(staking, mongodb, 27017, "TCP"));
    // Neither half would let it through on its own.
    assert!(!policies.ingress_allows(staking, mongodb, 27017, "TCP"));
    assert!(!policies.egress_allows(staking, mongodb, 27017, "TCP"));
    assert!(policies.connects(client, mongodb, 27017, "TCP"));
    assert!(policies.connects(staking, &stack.pods["lucid-redis"], 6379, "TCP"));
    assert_tron_reaches_exactly_its_dependencies_its_network_and_dns(&stack);
}
