//! `CLUSTER NODES` read into [`NodeEntry`]s: every node's own account of roles and slots.

/// One line of `CLUSTER NODES`: a node as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeEntry {
    pub(super) id: String,
    pub(super) port: u16,
    pub(super) flags: Vec<String>,
    /// The primary's id, for a replica.
    pub(super) primary_id: Option<String>,
    /// Slots it serves; slots being migrated or imported (`[slot->-id]`) are not listed.
    pub(super) slots: Vec<u16>,
}

impl NodeEntry {
    pub(super) fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

pub(super) fn myself_in(entries: &[NodeEntry], port: u16) -> &NodeEntry {
    myself_in_result(entries, port).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn myself_in_result(entries: &[NodeEntry], port: u16) -> Result<&NodeEntry, String> {
    entries
        .iter()
        .find(|entry| entry.has_flag("myself"))
        .ok_or_else(|| format!("CLUSTER NODES on port {port} has no `myself` line: {entries:?}"))
}

/// Who serves which slots, as one node sees it: the ids and slots of every node that serves any,
/// as `redis-cli --cluster check` compares them.
pub(super) fn slot_signature(entries: &[NodeEntry]) -> Vec<(String, Vec<u16>)> {
    let mut signature: Vec<(String, Vec<u16>)> = entries
        .iter()
        .filter(|entry| !entry.slots.is_empty())
        .map(|entry| (entry.id.clone(), entry.slots.clone()))
        .collect();
    signature.sort();
    signature
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus[,host]> <flags> <primary|-> <ping> <pong> <epoch>
/// <link> <slot or range>...`.
pub(super) fn parse_cluster_nodes(text: &str) -> Result<Vec<NodeEntry>, String> {
    text.lines().filter(|line| !line.trim().is_empty()).map(parse_node_line).collect()
}

fn parse_node_line(line: &str) -> Result<NodeEntry, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let bad = || format!("unexpected CLUSTER NODES line {line:?}");
    let [id, address, flags, primary, _ping, _pong, _epoch, _link, slot_fields @ ..] = fields.as_slice() else {
        return Err(bad());
    };
    let host_port = address.split('@').next().unwrap_or_default();
    let port = host_port.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).ok_or_else(bad)?;
    let mut slots = Vec::new();
    for field in slot_fields.iter().filter(|field| !field.starts_with('[')) {
        let (first, last) = field.split_once('-').unwrap_or((field, field));
        let (first, last): (u16, u16) = (first.parse().map_err(|_| bad())?, last.parse().map_err(|_| bad())?);
        slots.extend(first..=last);
    }
    Ok(NodeEntry {
        id: (*id).to_string(),
        port,
        flags: flags.split(',').map(str::to_string).collect(),
        primary_id: (*primary != "-").then(|| (*primary).to_string()),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_primaries_replicas_ranges_and_skips_migrating_slots() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
e7d1 127.0.0.1:30001@40001,node-1 myself,master - 0 0 1 connected 0-2 7 [8->-292f] [9-<-292f]
292f 127.0.0.1:30002@40002 master,fail - 0 0 2 disconnected
";
        let entries = parse_cluster_nodes(text).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].primary_id.as_deref(), Some("e7d1"));
        assert_eq!(entries[0].port, 30004);
        assert!(entries[0].has_flag("slave") && !entries[0].has_flag("master"));
        assert_eq!(myself_in(&entries, 30001).slots, [0, 1, 2, 7]);
        assert!(entries[2].has_flag("fail") && entries[2].slots.is_empty());
        assert_eq!(slot_signature(&entries), [("e7d1".to_string(), vec![0, 1, 2, 7])]);
    }

    #[test]
    fn rejects_truncated_lines() {
        assert!(parse_cluster_nodes("e7d1 127.0.0.1:30001@40001 master -").is_err());
    }
}
