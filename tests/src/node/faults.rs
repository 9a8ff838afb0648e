//! Faults of the boards, for the tests that need them: a node losing power (its kubelet,
//! containerd and pods killed at once, not drained) and coming back, and a power cut of the
//! whole cluster (every process of every node and of the control plane killed at once) and
//! the boot after it. A board keeps its disk (etcd's data, volumes, containerd's images and
//! snapshots, the kubelet's directory) and loses what it held in memory and in `/run`
//! (processes, mounts, containerd's state directory, pods' network namespaces).

use std::time::Instant;

use super::{NodeProcesses, NodeSpec, RealCluster, boot_node, host, keep};

impl RealCluster {
    /// Node `name` loses power: every process of it (containerd, kubelet, kube-proxy, its
    /// DNS, the shims, its pods' processes) killed at once with SIGKILL, and an agent's link
    /// to the LAN down (nothing answers on its addresses). Nothing is drained or told.
    /// Blocking.
    pub fn stop_node(&self, name: &str) {
        let node = self.node(name).clone();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let processes = &mut running.nodes[usize::from(node.index)];
        host::kill_all(&node_pids(&node, processes));
        processes.pids.clear();
        processes.holder = None;
        host::agent_link(&node, &self.nodes, false);
        forget_volatile(&node);
    }

    /// Node `name` boots again after [`RealCluster::stop_node`]: its link up, then its
    /// processes with the command lines of the first start. Blocking; returns once they run
    /// (not once the node is Ready: see [`RealCluster::wait_nodes_ready`]).
    pub fn start_node(&self, name: &str) {
        let node = self.node(name).clone();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let index = usize::from(node.index);
        assert!(
            running.nodes[index].pids.is_empty(),
            "node {name} is running; stop it first"
        );
        host::agent_link(&node, &self.nodes, true);
        let launches = running.nodes[index].launches.clone();
        running.nodes[index] = boot_node(&node, &launches);
    }

    /// A power cut of the whole cluster: every process of every node and of the control
    /// plane (etcd, API server, controller manager, scheduler) killed at the same moment
    /// with SIGKILL. The harness's DNS records and volume provisioner (add-ons of this test
    /// process) stay. Start it all again with [`RealCluster::boot`]. Blocking.
    pub fn power_cut(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let control_plane = self.control_plane.running();
        let mut pids: Vec<i32> = control_plane.iter().map(|(pid, _)| *pid as i32).collect();
        pids.push(running.scheduler_pid as i32);
        for (node, processes) in self.nodes.iter().zip(&running.nodes) {
            pids.extend(node_pids(node, processes));
        }
        host::kill_all(&pids);
        running.control_plane_lines = Some(control_plane.into_iter().map(|(_, l)| l).collect());
        for (node, processes) in self.nodes.iter().zip(running.nodes.iter_mut()) {
            processes.pids.clear();
            processes.holder = None;
            forget_volatile(node);
        }
    }

    /// The boot after [`RealCluster::power_cut`], as the boards' would: the control plane
    /// from its data on disk, then every node with the command lines of the first start.
    /// Returns once the processes run and the API server answers (not once the nodes are
    /// Ready). Blocking.
    pub fn boot(&self) {
        let started = Instant::now();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let lines = running
            .control_plane_lines
            .take()
            .expect("boot follows a power cut");
        self.control_plane.start_again(&lines);
        running.scheduler_pid = keep(&running.scheduler, None);
        let booted: Vec<NodeProcesses> = self
            .nodes
            .iter()
            .zip(&running.nodes)
            .map(|(node, processes)| boot_node(node, &processes.launches))
            .collect();
        running.nodes = booted;
        eprintln!(
            "[real-cluster] booted after the power cut in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Every process of a node: its components, an agent's namespace holder and whatever else
/// is in its network namespace (the shims), its pods' processes (its cgroup root), and
/// the server's shims (found by its containerd's socket).
fn node_pids(node: &NodeSpec, processes: &NodeProcesses) -> Vec<i32> {
    let mut pids: Vec<i32> = processes.pids.iter().map(|&p| p as i32).collect();
    pids.extend(processes.holder.map(|p| p as i32));
    if let Some(netns) = &node.netns {
        pids.extend(host::netns_pids(netns));
    }
    pids.extend(host::cgroup_pids(&node.cgroup_root));
    pids.extend(host::shims_of(&node.containerd_socket()));
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|&p| p != std::process::id() as i32);
    pids
}

/// What a board loses with its power beyond its processes: the mounts its kubelet and
/// containerd made (an agent's went with its mount namespace; the server's are in this
/// machine's), and containerd's state directory (in `/run` on a board).
fn forget_volatile(node: &NodeSpec) {
    host::unmount_under(&node.dir.join("containerd/state"));
    host::unmount_under(&node.dir.join("kubelet/root/pods"));
    let _ = std::fs::remove_dir_all(node.dir.join("containerd/state"));
}
