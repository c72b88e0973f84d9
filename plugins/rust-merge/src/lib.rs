//! rust-merge: the Rust twin of plugins/echo. A request handler that returns its request
//! unchanged and a merge that joins the parts that arrived with newlines, prefixed with
//! "missing=N\n" when some parts are missing.

use wasmpod::Parts;

wasmpod::handle!(|request: &[u8]| Ok(request.to_vec()));
wasmpod::merge!(join);

fn join(parts: Parts) -> wasmpod::Result<Vec<u8>> {
    let mut out = Vec::new();
    if parts.missing() > 0 {
        out.extend_from_slice(format!("missing={}\n", parts.missing()).as_bytes());
    }
    for (i, part) in parts.present().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(part);
    }
    Ok(out)
}
