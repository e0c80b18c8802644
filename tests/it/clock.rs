//! The server's time is the injected clock (`src/clock.rs`): everything a client sees of time
//! — `iat`, `exp`, the time inside a `jti`, the moment a token stops being active — follows a
//! test clock to the second, so tests move time instead of sleeping.

use mandate::clock::{Clock, TestClock};
use mandate::crypto::time_ordered_id;

use crate::helpers::*;

/// The first seven characters of a `jti` spell the milliseconds it was made at.
fn jti_time(at: i64) -> String {
    time_ordered_id(&TestClock::new(at))[..7].to_string()
}

/// RFC 7662 §2.2 (`active`) and RFC 7519 §4.1.4 (`exp`): a token is active until the second
/// of its `exp` and not at it, by the server's clock; its `iat` and `jti` carry the same clock.
#[tokio::test]
async fn rfc7662_s2_2_tokens_carry_and_expire_by_the_servers_clock() {
    for b in backends() {
        let app = spawn_app(b).await;
        let start = app.db.clock.now();
        let first = app.cc_token(&[("audience", "orders-api")]).await;
        let i = app.introspect(&first).await;
        assert_eq!(i["iat"], start, "{b:?}: {i}");
        let exp = i["exp"].as_i64().unwrap();
        let jti = i["jti"].as_str().unwrap().to_string();
        assert_eq!(jti[..7], jti_time(start), "{b:?}: {jti}");

        app.advance(exp - start - 1);
        let later = app.cc_token(&[("audience", "orders-api")]).await;
        let l = app.introspect(&later).await;
        let later_jti = l["jti"].as_str().unwrap();
        assert_eq!(later_jti[..7], jti_time(exp - 1), "{b:?}: {later_jti}");
        assert!(later_jti > jti.as_str(), "ids made later sort after");
        assert_eq!(
            app.introspect(&first).await["active"],
            true,
            "{b:?}: a second before its exp"
        );
        app.advance(1);
        assert_eq!(
            app.introspect(&first).await["active"],
            false,
            "{b:?}: at its exp"
        );
        assert_eq!(app.introspect(&later).await["active"], true, "{b:?}");
        app.stop().await;
    }
}
