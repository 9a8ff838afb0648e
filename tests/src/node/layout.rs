//! Where each node of the real cluster lives: its name, addresses, pod range, network
//! namespace, cgroup root and state directory. The server (control plane + kubelet) is in
//! this machine's own network namespace, as a k3s server's kubelet shares its board with the
//! control plane; each agent is a board of its own: a network namespace joined to the server
//! by a veth on the harness's "LAN" bridge, and a mount namespace where the paths every
//! kubelet writes whatever its flags (`/var/log/pods`, `/var/log/containers`) are its own.
//!
//! Node `i` has the pod range `10.244.i.0/24` on its bridge `lucid0` and the address
//! `10.244.i.1` there (kubelet, kube-proxy's NodePorts and the node's DNS listen on it). The
//! agents' LAN addresses are `10.245.0.(i+1)`, the server's `10.245.0.1`; each node routes
//! the other nodes' pod ranges to their LAN address, as flannel's host-gw backend does.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{CGROUP_ROOT, NODE_NAME};

/// The bridge between the nodes (the boards' Ethernet switch), on the host side.
pub const LAN_BRIDGE: &str = "lucid-lan";
/// The pod range of every node together (kube-proxy's `clusterCIDR` with several nodes).
pub const CLUSTER_POD_CIDR: &str = "10.244.0.0/16";
/// The label `k3s/config/ssd.yaml` gives boards with an SSD.
pub const SSD_LABEL: &str = "lucid.io/ssd";

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub index: u8,
    pub name: String,
    /// The node's address: on its pod bridge, what the API server and kube-proxy use.
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    /// The address on the LAN bridge (several nodes only).
    pub lan_ip: Option<Ipv4Addr>,
    /// The agent's network namespace (`ip netns` name); `None` for the server.
    pub netns: Option<String>,
    /// Labelled `lucid.io/ssd=true`, as `k3s/config/ssd.yaml` labels boards with an SSD.
    pub ssd: bool,
    pub cgroup_root: String,
    /// Its state (containerd, kubelet, CNI, logs): the run's directory for the server.
    pub dir: PathBuf,
    /// Several nodes in the cluster (routes, clusterCIDR, the LAN).
    pub multi: bool,
}

impl NodeSpec {
    pub fn is_server(&self) -> bool {
        self.index == 0
    }

    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// The LAN address of node `index`.
    pub fn lan_ip_of(index: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 245, 0, index + 1)
    }

    /// The host end of an agent's veth.
    pub fn host_veth(&self) -> String {
        format!("lucid-v{}", self.index)
    }
}

/// The nodes of a cluster of `count` (1 to 9): the server `lucid-node`, then agents
/// `lucid-node-1`, `lucid-node-2`, …; the server and the first agent have an SSD.
pub fn nodes(count: usize, run_dir: &Path) -> Vec<NodeSpec> {
    assert!(
        (1..=9).contains(&count),
        "the real cluster has 1 to 9 nodes, not {count}"
    );
    let multi = count > 1;
    (0..count as u8)
        .map(|index| {
            let server = index == 0;
            let name = if server {
                NODE_NAME.to_string()
            } else {
                format!("{NODE_NAME}-{index}")
            };
            NodeSpec {
                index,
                ip: Ipv4Addr::new(10, 244, index, 1),
                pod_cidr: format!("10.244.{index}.0/24"),
                lan_ip: multi.then(|| NodeSpec::lan_ip_of(index)),
                netns: (!server).then(|| name.clone()),
                ssd: multi && index <= 1,
                cgroup_root: if server {
                    CGROUP_ROOT.to_string()
                } else {
                    format!("{CGROUP_ROOT}-{index}")
                },
                dir: if server {
                    run_dir.to_path_buf()
                } else {
                    run_dir.join(&name)
                },
                multi,
                name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_is_todays_node_and_three_have_their_own_ranges() {
        let one = nodes(1, Path::new("/r"));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "lucid-node");
        assert_eq!(one[0].ip, Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(one[0].pod_cidr, "10.244.0.0/24");
        assert!(one[0].netns.is_none() && one[0].lan_ip.is_none() && !one[0].ssd);
        assert_eq!(one[0].dir, Path::new("/r"));

        let three = nodes(3, Path::new("/r"));
        let names: Vec<&str> = three.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["lucid-node", "lucid-node-1", "lucid-node-2"]);
        assert_eq!(three[2].pod_cidr, "10.244.2.0/24");
        assert_eq!(three[2].lan_ip, Some(Ipv4Addr::new(10, 245, 0, 3)));
        assert_eq!(three[2].netns.as_deref(), Some("lucid-node-2"));
        assert_eq!(three[2].cgroup_root, "lucid-node-2");
        let ssd: Vec<bool> = three.iter().map(|n| n.ssd).collect();
        assert_eq!(
            ssd,
            [true, true, false],
            "the server and one agent, as k3s/ labels them"
        );
    }
}
