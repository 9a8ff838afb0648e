//! NetworkPolicies from the compose networks and `dependsOn`. A pod accepts traffic
//! - from pods that share one of its networks (compose: containers on one network talk);
//! - on its ports, from pods that depend on it (they carry `uses.lucid.io/<it>`), so a
//!   TRON service reaches the databases it names in `dependsOn` without them being open to
//!   every source; services on an isolated network admit no dependents from outside it;
//! - on its ports, from anywhere when its Service is external (NodePort, LoadBalancer).
//!
//! Pods on an isolated network (`lucid-tron-isolated`) may reach only DNS, their network and
//! the services they depend on. The paths are explicit in each policy and need nothing but
//! the service itself to render: the dependent names the dependency, the dependency admits
//! whoever names it.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::labels;
use crate::api::LucidService;

/// Networks whose pods may talk only to their own network, their dependencies and DNS.
pub const ISOLATED_NETWORKS: &[&str] = &["lucid-tron-isolated"];

fn peer(label: String) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some([(label, "true".to_string())].into()),
            match_expressions: None,
        }),
        ..Default::default()
    }
}

pub fn is_isolated(ls: &LucidService) -> bool {
    ls.spec
        .networks
        .iter()
        .any(|n| ISOLATED_NETWORKS.contains(&n.as_str()))
}

/// The service's own ports, as policy ports.
fn service_ports(ls: &LucidService) -> Vec<NetworkPolicyPort> {
    ls.spec
        .ports
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(p.port)),
            protocol: Some(p.protocol.as_str().into()),
            ..Default::default()
        })
        .collect()
}

pub fn network_policy(ls: &LucidService, namespace: &str, owner: &OwnerReference) -> NetworkPolicy {
    let from_networks: Vec<NetworkPolicyPeer> = ls
        .spec
        .networks
        .iter()
        .map(|n| peer(labels::network_label(n)))
        .collect();
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(from_networks),
        ports: None,
    }];
    if !ls.spec.ports.is_empty() && !is_isolated(ls) {
        // Dependents may reach its ports, whatever network they are on. An isolated service
        // admits only its own network: depending on a TRON service does not open TRON.
        ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![peer(labels::uses_label(&ls.name_any()))]),
            ports: Some(service_ports(ls)),
        });
    }
    if ls.spec.service.type_.is_external() && !ls.spec.ports.is_empty() {
        // Exposed on a node port or load balancer: anyone may reach the service's ports.
        ingress.push(NetworkPolicyIngressRule {
            from: None,
            ports: Some(service_ports(ls)),
        });
    }
    let mut policy_types = vec!["Ingress".to_string()];
    let egress = is_isolated(ls).then(|| {
        policy_types.push("Egress".into());
        let dns_ports = ["UDP", "TCP"].map(|protocol| NetworkPolicyPort {
            port: Some(IntOrString::Int(53)),
            protocol: Some(protocol.into()),
            ..Default::default()
        });
        let mut to: Vec<NetworkPolicyPeer> = ls
            .spec
            .networks
            .iter()
            .map(|n| peer(labels::network_label(n)))
            .collect();
        to.extend(ls.spec.depends_on.iter().map(|d| NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some([(labels::SERVICE.to_string(), d.clone())].into()),
                match_expressions: None,
            }),
            ..Default::default()
        }));
        vec![
            // DNS anywhere (CoreDNS lives in kube-system).
            NetworkPolicyEgressRule {
                to: None,
                ports: Some(dns_ports.to_vec()),
            },
            NetworkPolicyEgressRule {
                to: Some(to),
                ports: None,
            },
        ]
    });
    NetworkPolicy {
        metadata: super::owned_metadata(ls, namespace, owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels::selector(ls)),
                match_expressions: None,
            }),
            ingress: Some(ingress),
            egress,
            policy_types: Some(policy_types),
        }),
    }
}
