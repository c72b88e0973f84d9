//! rust-leaf: the Rust twin of plugins/benchleaf. A request handler that does nothing (the cost
//! of one call) and a leaf that sums its input bytes into a little-endian u64.

wasmpod::handle!(|_: &[u8]| Ok(""));
wasmpod::leaf!(sum);

fn sum(input: &[u8]) -> wasmpod::Result<[u8; 8]> {
    let s: u64 = input.iter().map(|&b| u64::from(b)).sum();
    Ok(s.to_le_bytes())
}
