//! Fails every call with a message longer than the host keeps, made of multi-byte characters
//! (TestLongErrorMessage).
wasmpod::handle!(|_: &[u8]| -> wasmpod::Result<Vec<u8>> {
    Err(wasmpod::Error::msg(format!("xy{}", "\u{20ac}".repeat(2000))))
});
