//! The zone graph (petgraph): zones are nodes, and an edge `a -> b` carries the
//! exact set of services `a` may open to `b` after denies are subtracted. Edges
//! with nothing left are not in the graph.

use std::collections::VecDeque;

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::ir::eval::Evaluator;
use crate::ir::{ServiceSet, ZoneId};

pub struct ZoneGraph {
    pub graph: DiGraph<ZoneId, ServiceSet>,
}

impl ZoneGraph {
    pub fn new(ev: &Evaluator<'_>) -> Self {
        let mut graph = DiGraph::with_capacity(ev.model.zones.len(), 0);
        for i in 0..ev.model.zones.len() {
            graph.add_node(ZoneId(i as u32));
        }
        let pairs = ev.model.allowed_pairs();
        graph.reserve_edges(pairs.len());
        for (from, to, set) in pairs {
            graph.add_edge(node(*from), node(*to), set.clone());
        }
        ZoneGraph { graph }
    }

    /// The shortest path from `from` to `to` through allowed edges, as hops; at
    /// least one hop, so `a -> a` needs a flow from `a` to itself or a cycle.
    pub fn shortest_path(&self, from: ZoneId, to: ZoneId) -> Option<Vec<(ZoneId, ZoneId, ServiceSet)>> {
        self.path_in(&self.tree(from), from, to)
    }

    /// Breadth first from `from`: the edge each zone was first reached by.
    /// The search starts from the edges out of `from`, so that a path has at
    /// least one hop. (A search for one destination that stops there finds
    /// the same parents for it and its ancestors: BFS never changes a parent.)
    fn tree(&self, from: ZoneId) -> Vec<Option<EdgeIndex>> {
        let n = self.graph.node_count();
        let mut parent: Vec<Option<EdgeIndex>> = vec![None; n];
        let mut seen = vec![false; n];
        let mut queue = VecDeque::new();
        for e in self.graph.edges(node(from)) {
            let t = e.target().index();
            if !seen[t] {
                seen[t] = true;
                parent[t] = Some(e.id());
                queue.push_back(e.target());
            }
        }
        while let Some(cur) = queue.pop_front() {
            for e in self.graph.edges(cur) {
                let t = e.target().index();
                if !seen[t] {
                    seen[t] = true;
                    parent[t] = Some(e.id());
                    queue.push_back(e.target());
                }
            }
        }
        parent
    }

    /// The path to `to` in the search tree from `from`.
    fn path_in(&self, parent: &[Option<EdgeIndex>], from: ZoneId, to: ZoneId) -> Option<Vec<(ZoneId, ZoneId, ServiceSet)>> {
        parent.get(node(to).index()).copied().flatten()?;
        let mut hops = Vec::new();
        let mut at = node(to);
        while let Some(eid) = parent[at.index()] {
            let (a, b) = self.graph.edge_endpoints(eid)?;
            hops.push((self.graph[a], self.graph[b], self.graph[eid].clone()));
            if a == node(from) {
                break;
            }
            at = a;
        }
        hops.reverse();
        Some(hops)
    }
}

fn node(z: ZoneId) -> NodeIndex {
    NodeIndex::new(z.0 as usize)
}

/// The shortest path from one untrusted zone into one cde zone.
#[derive(Clone, Debug)]
pub struct Exposure {
    pub from: ZoneId,
    pub to: ZoneId,
    pub hops: Vec<(ZoneId, ZoneId, ServiceSet)>,
}

impl ZoneGraph {
    /// For every untrusted zone and every cde zone it can reach through allowed
    /// flows, the shortest path (listing every simple path would be exponential).
    pub fn exposures(&self, model: &crate::ir::Model) -> Vec<Exposure> {
        let mut out = Vec::new();
        for (u, zu) in model.zones.iter().enumerate() {
            if zu.scope != crate::ir::Scope::Untrusted {
                continue;
            }
            let from = ZoneId(u as u32);
            let tree = self.tree(from);
            for (c, zc) in model.zones.iter().enumerate() {
                if !zc.is_cde() {
                    continue;
                }
                let to = ZoneId(c as u32);
                if let Some(hops) = self.path_in(&tree, from, to) {
                    out.push(Exposure { from, to, hops });
                }
            }
        }
        out
    }
}
