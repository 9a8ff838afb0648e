//! NetworkPolicies from the compose networks: a pod accepts traffic only from pods that share
//! one of its networks, plus from anywhere on its ports when its Service is external. Pods on
//! an isolated network (`lucid-tron-isolated`) may reach only DNS and the services they
//! depend on.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

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
    if ls.spec.service.type_.is_external() && !ls.spec.ports.is_empty() {
        // Exposed on a node port or load balancer: anyone may reach the service's ports.
        let ports = ls
            .spec
            .ports
            .iter()
            .map(|p| NetworkPolicyPort {
                port: Some(IntOrString::Int(p.port)),
                protocol: Some(p.protocol.as_str().into()),
                ..Default::default()
            })
            .collect();
        ingress.push(NetworkPolicyIngressRule {
            from: None,
            ports: Some(ports),
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
