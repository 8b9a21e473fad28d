//! The `peergate` command line.

fn main() {
    println!("peergate {}", env!("CARGO_PKG_VERSION"));
}
