//! Builders shared by proto's integration tests: deterministic keys and entries.

#![allow(dead_code, missing_docs)]

use proto::entry::{recovery_commitment, Body, Consent, Content, Entry, Method, Notice, Rotation};
use proto::keys::{Hash, PublicKey, SecretKey};

/// A key from a one-byte seed label: seed = [label; 32].
pub fn key(label: u8) -> SecretKey {
    SecretKey::from_seed([label; 32])
}

pub const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub fn consent(controller: PublicKey, purposes: &[&str]) -> Consent {
    let mut purposes: Vec<String> = purposes.iter().map(|s| (*s).to_owned()).collect();
    purposes.sort();
    Consent {
        controller,
        purposes,
        data: vec![],
        legal_basis: "dpv:Consent".into(),
        notice: None,
        valid_until: None,
        jurisdiction: None,
        method: Method::Cli,
        gpc: None,
    }
}

pub fn rich_consent(controller: PublicKey) -> Consent {
    Consent {
        controller,
        purposes: vec![
            "dpv:DirectMarketing".into(),
            "dpv:ServicePersonalisation".into(),
        ],
        data: vec!["pd:EmailAddress".into(), "pd:PurchaseHistory".into()],
        legal_basis: "dpv:ExplicitlyExpressedConsent".into(),
        notice: Some(Notice {
            url: "https://brand.example/privacy/v3".into(),
            sha256: proto::entry::sha256(b"We will send you offers by e-mail."),
            version: "v3".into(),
        }),
        valid_until: Some(T0 + 400 * 86_400_000),
        jurisdiction: Some("EU".into()),
        method: Method::UiAction,
        gpc: Some(false),
    }
}

/// A chain under construction, signed by whatever key is current.
pub struct ChainBuilder {
    pub subject: SecretKey,
    pub signing: SecretKey,
    pub recovery: SecretKey,
    pub entries: Vec<Entry>,
    pub time: u64,
}

impl ChainBuilder {
    pub fn new(subject: u8, recovery: u8) -> Self {
        let s = key(subject);
        ChainBuilder {
            signing: s.clone(),
            subject: s,
            recovery: key(recovery),
            entries: vec![],
            time: T0,
        }
    }

    pub fn content(&self, body: Body) -> Content {
        let seq = self.entries.len() as u64 + 1;
        Content {
            subject: self.subject.public_key(),
            seq,
            prev: self.entries.last().map_or(Hash::ZERO, Entry::hash),
            issued_at: self.time,
            signer: self.signing.public_key(),
            recovery: (seq == 1).then(|| recovery_commitment(&self.recovery.public_key())),
            body,
        }
    }

    pub fn push(&mut self, body: Body) -> Entry {
        let e = self
            .content(body)
            .sign(&self.signing)
            .expect("valid content");
        self.entries.push(e.clone());
        self.time += 60_000;
        e
    }

    pub fn grant(&mut self, controller: PublicKey, purposes: &[&str]) -> Entry {
        self.push(Body::Grant(consent(controller, purposes)))
    }

    pub fn withdraw(&mut self, controller: PublicKey, purposes: &[&str]) -> Entry {
        self.push(Body::Withdraw(consent(controller, purposes)))
    }

    pub fn refuse(&mut self, controller: PublicKey, purposes: &[&str]) -> Entry {
        self.push(Body::Refuse(consent(controller, purposes)))
    }

    /// Rotates to `new_signing`, committing to `next_recovery`, signed by the current recovery key.
    pub fn rotate(&mut self, new_signing: u8, next_recovery: u8) -> Entry {
        let new = key(new_signing);
        let next = key(next_recovery);
        let mut c = self.content(Body::Rotate(Rotation {
            new_key: new.public_key(),
            next_recovery: recovery_commitment(&next.public_key()),
        }));
        c.signer = self.recovery.public_key();
        let e = c.sign(&self.recovery).expect("valid rotation");
        self.entries.push(e.clone());
        self.time += 60_000;
        self.signing = new;
        self.recovery = next;
        e
    }
}
