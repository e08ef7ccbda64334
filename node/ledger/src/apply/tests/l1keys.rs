//! `SetL1Key`: a validator's Ethereum key, registered with its proof of possession.

use super::*;
use crate::l1key::{l1_key_digest, L1Address};
use k256::ecdsa::SigningKey as L1Key;
use sha3::{Digest, Keccak256};

fn l1_key(seed: u8) -> L1Key {
    L1Key::from_slice(&[seed; 32]).unwrap()
}

fn l1_address(k: &L1Key) -> L1Address {
    let point = k.verifying_key().to_encoded_point(false);
    let h = Keccak256::digest(&point.as_bytes()[1..]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&h[12..]);
    L1Address(a)
}

fn prove(st: &State, operator: &Address, k: &L1Key, address: &L1Address) -> [u8; 65] {
    let digest = l1_key_digest(st.chain_id(), operator, address);
    let (sig, recid) = k.sign_prehash_recoverable(&digest).unwrap();
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + recid.to_byte();
    out
}

fn set_body(st: &State, operator: &SigningKey, k: &L1Key) -> TxBody {
    let address = l1_address(k);
    TxBody::SetL1Key {
        address,
        signature: prove(st, &address_of(operator), k, &address),
    }
}

fn address_of(k: &SigningKey) -> Address {
    address(k)
}

#[test]
fn a_validator_registers_and_replaces_its_l1_key() {
    let (n, mut st) = net();
    let op = &n.operators[0];
    let k = l1_key(11);
    let body = set_body(&st, op, &k);
    let r = st.accept(&sign_tx(&st, op, 0, body));
    assert!(r.events.contains(&Event::L1KeySet {
        operator: address(op),
        address: l1_address(&k),
    }));
    assert_eq!(
        st.validator(&address(op)).unwrap().l1_address,
        Some(l1_address(&k))
    );
    // The record with its key survives the snapshot and changes the state root.
    let before = st.state_root();
    let k2 = l1_key(12);
    let body = set_body(&st, op, &k2);
    st.accept(&sign_tx(&st, op, 0, body));
    assert_ne!(st.state_root(), before);
    assert_eq!(
        st.validator(&address(op)).unwrap().l1_address,
        Some(l1_address(&k2))
    );
    let restored = State::from_snapshot(&st.snapshot()).unwrap();
    assert_eq!(restored, st);
}

#[test]
fn l1_key_rejections_change_nothing() {
    let (n, mut st) = net();
    let op = &n.operators[0];
    let k = l1_key(21);
    let addr = l1_address(&k);

    // A signature by another key than the address's.
    let other = l1_key(22);
    let forged = TxBody::SetL1Key {
        address: addr,
        signature: prove(&st, &address(op), &other, &addr),
    };
    st.reject(&sign_tx(&st, op, 0, forged), TxError::BadL1Possession);

    // A garbled signature.
    let mut sig = prove(&st, &address(op), &k, &addr);
    sig[10] ^= 1;
    let garbled = TxBody::SetL1Key {
        address: addr,
        signature: sig,
    };
    st.reject(&sign_tx(&st, op, 0, garbled), TxError::BadL1Possession);

    // A proof made for another operator, replayed by this one.
    let for_other = TxBody::SetL1Key {
        address: addr,
        signature: prove(&st, &address(&n.operators[1]), &k, &addr),
    };
    st.reject(&sign_tx(&st, op, 0, for_other), TxError::BadL1Possession);

    // A proof for another chain.
    let digest = l1_key_digest("another-chain", &address(op), &addr);
    let (s, recid) = k.sign_prehash_recoverable(&digest).unwrap();
    let mut sig = [0u8; 65];
    sig[..64].copy_from_slice(&s.to_bytes());
    sig[64] = 27 + recid.to_byte();
    let other_chain = TxBody::SetL1Key {
        address: addr,
        signature: sig,
    };
    st.reject(&sign_tx(&st, op, 0, other_chain), TxError::BadL1Possession);

    // Not a validator: a user with a valid proof for itself.
    let user = &n.users[2];
    let body = TxBody::SetL1Key {
        address: addr,
        signature: prove(&st, &address(user), &k, &addr),
    };
    st.reject(&sign_tx(&st, user, 0, body), TxError::UnknownValidator);

    // An address another validator holds.
    let body = set_body(&st, op, &k);
    st.accept(&sign_tx(&st, op, 0, body));
    let op1 = &n.operators[1];
    let body = set_body(&st, op1, &k);
    st.reject(&sign_tx(&st, op1, 0, body), TxError::L1KeyInUse);
}

#[test]
fn genesis_l1_addresses_are_recorded_and_unique() {
    let n = TestNet::new(2, 2);
    let mut g = n.genesis.clone();
    g.validators[0].l1_address = Some(L1Address([1; 20]));
    let st = State::from_genesis(&g).unwrap();
    assert_eq!(
        st.validator(&g.validators[0].operator).unwrap().l1_address,
        Some(L1Address([1; 20]))
    );
    assert_eq!(
        st.validator(&g.validators[1].operator).unwrap().l1_address,
        None
    );
    let text = toml::to_string(&g).unwrap();
    assert!(text.contains("l1_address = \"0x0101010101010101010101010101010101010101\""));
    assert_eq!(Genesis::from_toml(&text).unwrap(), g);
    g.validators[1].l1_address = Some(L1Address([1; 20]));
    assert!(State::from_genesis(&g).is_err());
}
