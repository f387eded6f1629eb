//! The network behaviour: every protocol the node speaks, and their configuration.
// The derive generates a public event enum without docs.
#![allow(missing_docs)]

use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageId};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, kad, mdns, ping, StreamProtocol};
use proto::sync::{
    MAX_GOSSIP, PROTOCOL, TOPIC_CHECKPOINTS, TOPIC_ENTRIES, TOPIC_FORKS, TOPIC_SPLIT_VIEWS,
};
use sha2::Digest as _;

use super::codec::SyncCodec;
use super::REQUEST_TIMEOUT;

/// The network behaviour: every protocol the node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// New entries and fork proofs.
    pub gossipsub: gossipsub::Behaviour,
    /// The sync protocol.
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Peer identification (agent, listen addresses).
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Wider discovery.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// LAN discovery (off by configuration or when multicast is unavailable).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The gossipsub score below which a peer's messages are ignored (and the node bans it).
pub const GRAYLIST_THRESHOLD: f64 = -80.0;

/// A gossip message id: `SHA-256(topic || 0x00 || payload)`, so the same batch published by two
/// nodes on one topic is one message, and the same batch on two topics is two.
pub fn message_id(m: &gossipsub::Message) -> MessageId {
    let mut h = sha2::Sha256::new();
    h.update(m.topic.as_str().as_bytes());
    h.update([0u8]);
    h.update(&m.data);
    MessageId::from(h.finalize().to_vec())
}

impl Behaviour {
    /// Builds the behaviour: with an empty `interest` the node takes the all-entries topic,
    /// otherwise its controllers' topics; every node takes fork proofs.
    ///
    /// # Errors
    /// When a protocol's configuration is refused.
    pub fn new(
        key: &libp2p::identity::Keypair,
        mdns_on: bool,
        interest: &[proto::PublicKey],
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let peer_id = key.public().to_peer_id();
        let gs_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(700))
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .message_id_fn(message_id)
            .max_transmit_size(MAX_GOSSIP + 1024)
            .validate_messages()
            .duplicate_cache_time(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gs_config)
                .map_err(|e| format!("gossipsub: {e}"))?;
        let mut params = gossipsub::PeerScoreParams {
            ip_colocation_factor_weight: 0.0,
            ..Default::default()
        };
        // Every node takes fork proofs, checkpoints and split-view proofs; a node with an
        // interest takes its controllers' entries, any other node every entry.
        let common = [TOPIC_FORKS, TOPIC_CHECKPOINTS, TOPIC_SPLIT_VIEWS].map(str::to_owned);
        let topics: Vec<String> = if interest.is_empty() {
            std::iter::once(TOPIC_ENTRIES.to_owned())
                .chain(common)
                .collect()
        } else {
            interest
                .iter()
                .map(proto::sync::controller_topic)
                .chain(common)
                .collect()
        };
        for topic in &topics {
            let tp = gossipsub::TopicScoreParams {
                topic_weight: 1.0,
                mesh_message_deliveries_weight: 0.0,
                mesh_failure_penalty_weight: 0.0,
                invalid_message_deliveries_weight: -20.0,
                invalid_message_deliveries_decay: 0.9,
                ..Default::default()
            };
            params
                .topics
                .insert(IdentTopic::new(topic.as_str()).hash(), tp);
        }
        let thresholds = gossipsub::PeerScoreThresholds {
            gossip_threshold: -10.0,
            publish_threshold: -50.0,
            graylist_threshold: GRAYLIST_THRESHOLD,
            accept_px_threshold: 10.0,
            opportunistic_graft_threshold: 20.0,
        };
        gossipsub
            .with_peer_score(params, thresholds)
            .map_err(|e| format!("gossipsub peer score: {e}"))?;
        for topic in &topics {
            gossipsub
                .subscribe(&IdentTopic::new(topic.as_str()))
                .map_err(|e| format!("subscribing to {topic}: {e}"))?;
        }
        let sync = request_response::Behaviour::with_codec(
            SyncCodec,
            [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(REQUEST_TIMEOUT)
                .with_max_concurrent_streams(32),
        );
        let identify = identify::Behaviour::new(
            identify::Config::new("/consent-ledger/1".into(), key.public())
                .with_agent_version(format!("consent-node/{}", env!("CARGO_PKG_VERSION"))),
        );
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(StreamProtocol::new("/consent-ledger/kad/1")),
        );
        kad.set_mode(Some(kad::Mode::Server));
        let mdns = if mdns_on {
            match mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS is unavailable; LAN discovery is off");
                    None
                }
            }
        } else {
            None
        };
        Ok(Behaviour {
            gossipsub,
            sync,
            identify,
            ping: ping::Behaviour::default(),
            kad,
            mdns: Toggle::from(mdns),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_covers_topic_and_payload() {
        let m = |topic: &str| gossipsub::Message {
            source: None,
            data: vec![0],
            sequence_number: None,
            topic: gossipsub::TopicHash::from_raw(topic),
        };
        // The example of docs/PROTOCOL.md 16.2.
        assert_eq!(
            hex::encode(message_id(&m("consent-ledger/forks/1")).0),
            "d48f73eccc43136d6beea02ace72d61dda1a030ad1ec0c00d3f5e044a06e2c71"
        );
        assert_ne!(message_id(&m(TOPIC_ENTRIES)), message_id(&m(TOPIC_FORKS)));
    }
}
