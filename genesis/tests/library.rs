//! The library API as `ledgerd localnet` uses it.

use genesis::{Error, LocalnetOptions, create_localnet, read_manifest};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).expect("read")
}

#[test]
fn same_options_give_byte_identical_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = LocalnetOptions { seed: 42, ..LocalnetOptions::new(3, 5, tmp.path().join("a")) };
    let b = LocalnetOptions { out: tmp.path().join("b"), ..a.clone() };
    let ma = create_localnet(&a).expect("localnet a");
    let mb = create_localnet(&b).expect("localnet b");
    assert_eq!(ma.genesis_hash, mb.genesis_hash);
    for file in ["genesis.json", "node2/validator_key.json", "node2/p2p_key.json", "node1/config.toml"] {
        assert_eq!(read(&a.out.join(file)), read(&b.out.join(file)), "{file}");
    }
    assert_eq!(read_manifest(&a.out).expect("manifest"), ma);

    let c = LocalnetOptions { seed: 43, out: tmp.path().join("c"), ..a.clone() };
    let mc = create_localnet(&c).expect("localnet c");
    assert_ne!(mc.genesis_hash, ma.genesis_hash);
    assert_ne!(read(&c.out.join("node0/p2p_key.json")), read(&a.out.join("node0/p2p_key.json")));
    assert_ne!(mc.accounts[0].address, ma.accounts[0].address);
}

#[test]
fn existing_genesis_needs_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = LocalnetOptions::new(1, 0, tmp.path().join("net"));
    create_localnet(&opts).expect("first");
    assert!(matches!(create_localnet(&opts), Err(Error::AlreadyExists { .. })));
    create_localnet(&LocalnetOptions { force: true, ..opts }).expect("reset");
}

#[test]
fn bad_manifest_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(matches!(read_manifest(tmp.path()), Err(Error::Read { .. })));
    std::fs::write(tmp.path().join("localnet.json"), r#"{"chain_id": "x"}"#).expect("write");
    let err = read_manifest(tmp.path()).expect_err("incomplete manifest");
    assert!(err.to_string().contains("localnet manifest is invalid"), "{err}");
}
