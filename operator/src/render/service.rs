//! The Service named after the LucidService, so `http://<name>:<port>` resolves as in compose.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels;
use crate::api::LucidService;

pub fn service(ls: &LucidService, namespace: &str, owner: &OwnerReference) -> Option<Service> {
    if ls.spec.ports.is_empty() {
        return None;
    }
    let type_ = ls.spec.service.type_;
    let ports = ls
        .spec
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: p.port,
            target_port: Some(IntOrString::String(p.name.clone())),
            protocol: Some(p.protocol.as_str().into()),
            node_port: if type_.is_external() {
                p.node_port
            } else {
                None
            },
            ..Default::default()
        })
        .collect();
    Some(Service {
        metadata: super::owned_metadata(ls, namespace, owner),
        spec: Some(ServiceSpec {
            type_: Some(type_.as_str().into()),
            selector: Some(labels::selector(ls)),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    })
}
