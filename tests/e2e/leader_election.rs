//! Leader election on a real kube-apiserver: replicas of the operator (the same `Replica`
//! `main` runs), each with its own client identity so the audit log tells their requests
//! apart. The leader is killed outright (its tasks aborted: no release, like SIGKILL) and a
//! standby takes over within the lease bound; the audit log shows that the two never wrote
//! in the same period. Then a leader stopping cleanly releases the Lease and a standby takes
//! over at its next try.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use lucid_e2e::replica::Running;
use lucid_e2e::{
    Kubelet, apply_yaml, control_plane, create_namespace, init_tracing, install_crds, is_ready,
    wait_for,
};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::leader::{ElectionConfig, Role};

const NS: &str = "election";
const LEASE: Duration = Duration::from_secs(4);
const RENEW: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_secs(1);
/// How long a standby may take to take over a Lease nobody renews: a whole lease duration
/// on its own clock from when it last saw a change, plus its tries; doubled for a loaded
/// 2-core CI machine. (Locally it takes 3.5-4.2 s from the cut, even pinned to one core.)
const TAKEOVER: Duration = Duration::from_secs(LEASE.as_secs() * 2 + RETRY.as_secs() * 3);

fn election(namespace: &str, identity: &str) -> ElectionConfig {
    let mut election =
        ElectionConfig::new(namespace.into(), "lucid-operator".into(), identity.into());
    election.lease_duration = LEASE;
    election.renew_deadline = RENEW;
    election.retry_period = RETRY;
    election
}

fn start(identity: &'static str, user: &'static str) -> Running {
    Running::start(NS, user, Some(election(NS, identity)))
}

async fn lease(leases: &Api<Lease>) -> Option<k8s_openapi::api::coordination::v1::LeaseSpec> {
    leases
        .get_opt("lucid-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    lease(leases)
        .await
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Polls the Lease until `replica` holds it; returns how long that took. A failure says
/// what the replica was doing (a replica whose task ended can never take over).
async fn until_held_by(leases: &Api<Lease>, replica: &Running, limit: Duration) -> Duration {
    let started = Instant::now();
    let identity = replica.identity.as_str();
    loop {
        if holder(leases).await.as_deref() == Some(identity) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{identity} did not take the lease within {limit:?} (running: {}, role: {:?}; lease: {:?})",
            replica.is_running(),
            replica.leadership.role(),
            lease(leases).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ready, and at the generation the spec has now (a change rolled out).
/// Until `replica` knows it stands by (Unknown until its first read of the Lease).
async fn until_standby(replica: &Running, name: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while replica.leadership.role() != Role::Standby {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} stands by: {:?}", replica.leadership.role()));
}

fn ready_now(ls: &LucidService) -> bool {
    is_ready(ls) && ls.status.as_ref().and_then(|s| s.observed_generation) == ls.metadata.generation
}

fn parse(timestamp: &str) -> k8s_openapi::jiff::Timestamp {
    timestamp.parse().expect("audit timestamp")
}

const PHASE: &str =
    "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {name: lab}\nspec: {}\n";

fn service(name: &str, level: &str) -> String {
    format!(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: {name}}}\nspec:\n  image: {{repository: lucid/{name}, tag: \"1\"}}\n  phase: lab\n  ports: [{{name: http, port: 8080}}]\n  env: [{{name: LEVEL, value: {level}}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_leader_and_two_replicas_never_write_at_once() {
    lucid_e2e::control_plane::audit_on();
    init_tracing();
    let cp = control_plane();
    let admin = cp.client().await;
    install_crds(&admin).await;
    create_namespace(&admin, NS).await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NS);
    let services: Api<LucidService> = Api::namespaced(admin.clone(), NS);
    let _kubelet = Kubelet::start(admin.clone(), NS, Duration::from_millis(100));

    let a = start("replica-a", "lucid-operator");
    until_held_by(&leases, &a, Duration::from_secs(10)).await;
    let b = start("replica-b", "lucid-operator-b");
    apply_yaml::<LucidPhase>(&admin, NS, PHASE)
        .await
        .expect("phase");
    for name in ["alpha", "beta", "gamma"] {
        apply_yaml::<LucidService>(&admin, NS, &service(name, "one"))
            .await
            .expect("service");
    }
    for name in ["alpha", "beta", "gamma"] {
        wait_for(&services, name, "Ready, rolled out by the leader", is_ready).await;
    }
    // The Lease, not a's fence at this instant: one slow renewal on a loaded machine may
    // close the fence for a moment while a still holds the Lease.
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));
    // Standby from b's first read of the Lease, which a loaded machine may not have run yet.
    until_standby(&b, "b").await;
    assert!(
        cp.writes_by("lucid-operator-b", NS).is_empty(),
        "a standby writes nothing: {:?}",
        cp.writes_by("lucid-operator-b", NS)
    );

    // The leader dies without a word.
    a.kill();
    // a's last renewal as the Lease records it (a renewal already on the wire may land
    // later, which only makes the bound below stricter than it needs to be).
    let last_renewal = lease(&leases)
        .await
        .and_then(|l| l.renew_time)
        .expect("a renewed the lease");
    let takeover = until_held_by(&leases, &b, TAKEOVER).await;
    println!(
        "takeover after the leader was killed: {takeover:?} (lease {LEASE:?}, retry {RETRY:?})"
    );
    // b counts a whole lease duration from when it saw that renewal: never sooner. Both
    // times are written by replicas on this machine's clock, in microseconds.
    let acquired = lease(&leases)
        .await
        .and_then(|l| l.acquire_time)
        .expect("b recorded its acquire time");
    let waited = acquired.0.duration_since(last_renewal.0);
    assert!(
        waited >= k8s_openapi::jiff::SignedDuration::try_from(LEASE).expect("lease duration"),
        "b took the lease {waited:?} after a's last renewal, before it could have expired"
    );
    // The new leader rolls out a change.
    apply_yaml::<LucidService>(&admin, NS, &service("beta", "two"))
        .await
        .expect("change");
    wait_for(
        &services,
        "beta",
        "Ready at the new generation, by b",
        ready_now,
    )
    .await;

    let a_writes = cp.writes_by("lucid-operator", NS);
    let b_writes = cp.writes_by("lucid-operator-b", NS);
    assert!(
        !a_writes.is_empty() && !b_writes.is_empty(),
        "both led once"
    );
    let a_last = a_writes.iter().map(|w| parse(&w.0)).max().expect("a wrote");
    let b_first = b_writes.iter().map(|w| parse(&w.0)).min().expect("b wrote");
    assert!(
        a_last < b_first,
        "a wrote at {a_last} after b started writing at {b_first}"
    );

    // A clean stop releases the Lease: a standby takes over at its next try, not after a
    // whole lease duration.
    let c = start("replica-c", "baseline-kubectl");
    until_standby(&c, "c").await;
    let stopping = Instant::now();
    b.stop().await;
    let released = stopping.elapsed();
    // Released by b itself (else c would have to wait out a whole lease duration).
    let after_stop = holder(&leases).await;
    assert!(
        after_stop.as_deref() != Some("replica-b"),
        "b stopped without releasing the lease: {after_stop:?}"
    );
    let handover = until_held_by(&leases, &c, RETRY * 5).await;
    println!("clean handover: released after {released:?}, taken {handover:?} later");
    apply_yaml::<LucidService>(&admin, NS, &service("gamma", "three"))
        .await
        .expect("change");
    wait_for(
        &services,
        "gamma",
        "Ready at the new generation, by c",
        ready_now,
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_writing_before_a_standby_starts() {
    const NS: &str = "partition";
    lucid_e2e::control_plane::audit_on();
    init_tracing();
    let cp = control_plane();
    let admin = cp.client().await;
    install_crds(&admin).await;
    create_namespace(&admin, NS).await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NS);
    let services: Api<LucidService> = Api::namespaced(admin.clone(), NS);
    let _kubelet = Kubelet::start(admin.clone(), NS, Duration::from_millis(100));
    let upstream = cp
        .server
        .trim_start_matches("https://")
        .parse()
        .expect("API server address");
    let proxy = lucid_e2e::proxy::Proxy::start(upstream).await;

    // a reaches the API server only through the proxy; b directly.
    let a = Running::start_via(
        NS,
        "lucid-operator",
        Some(election(NS, "partitioned-a")),
        Some(format!("https://{}", proxy.address)),
    );
    until_held_by(&leases, &a, Duration::from_secs(10)).await;
    let b = Running::start(NS, "lucid-operator-b", Some(election(NS, "partitioned-b")));
    apply_yaml::<LucidPhase>(&admin, NS, PHASE)
        .await
        .expect("phase");
    apply_yaml::<LucidService>(&admin, NS, &service("delta", "one"))
        .await
        .expect("service");
    wait_for(&services, "delta", "Ready, rolled out by a", is_ready).await;

    proxy.cut();
    let cut = Instant::now();
    // a's fence closes at its renew deadline, whatever its election loop is doing.
    let fenced = loop {
        if !a.leadership.is_leader() {
            break cut.elapsed();
        }
        assert!(
            cut.elapsed() < RENEW + RETRY * 2,
            "a kept leading while cut off"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // And its election loop says so at once (the role channel, not just the fence): winning
    // the Lease back later is then a change the controllers see.
    let stepped_down = a.leadership.subscribe();
    tokio::time::timeout(RETRY * 3, async {
        let mut role = stepped_down;
        while *role.borrow_and_update() != Role::Standby {
            let _ = role.changed().await;
        }
    })
    .await
    .expect("a's election loop stepped down at its deadline");
    let takeover = until_held_by(&leases, &b, TAKEOVER).await;
    let taken = cut.elapsed();
    println!(
        "partition: a stopped writing {fenced:?} after the cut, b took over {taken:?} after it ({takeover:?} of polling)"
    );
    assert!(
        fenced < taken,
        "a stopped writing at {fenced:?}, after b started at {taken:?}"
    );

    apply_yaml::<LucidService>(&admin, NS, &service("delta", "two"))
        .await
        .expect("change");
    wait_for(
        &services,
        "delta",
        "Ready at the new generation, by b",
        ready_now,
    )
    .await;
    // Healed, a finds the Lease taken and stands by; it writes nothing more.
    proxy.heal().await;
    until_standby(&a, "a, once healed,").await;
    let a_last = cp
        .writes_by("lucid-operator", NS)
        .iter()
        .map(|w| parse(&w.0))
        .max()
        .expect("a wrote");
    let b_first = cp
        .writes_by("lucid-operator-b", NS)
        .iter()
        .map(|w| parse(&w.0))
        .min()
        .expect("b wrote");
    assert!(
        a_last < b_first,
        "a wrote at {a_last}, after b's first write at {b_first}"
    );
    b.stop().await;
    a.kill();
}
