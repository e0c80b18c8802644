//! The web storage methods, on both backends.

use crate::flows::REDIRECT_URI;
use crate::helpers::*;
use mandate::oauth::scope::ScopeSet;

#[tokio::test]
async fn stored_codes_are_single_use_on_both_backends() {
    use mandate::store::web::CodeRecord;
    for b in backends() {
        let db = test_db(b).await;
        let store = mandate::store::open(&db.url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let rec = CodeRecord {
            code_hash: vec![1; 32],
            client_id: "cli".into(),
            redirect_uri: REDIRECT_URI.into(),
            code_challenge: "c".into(),
            username: "alice".into(),
            scope: "a b".into(),
            aud: vec!["x".to_string(), "y".to_string()].into(),
            sid: "sid".into(),
            created_at: 100,
            expires_at: 160,
            used_at: None,
            replayed_at: None,
            nonce: Some("n-0S6_WzA2Mj".into()),
        };
        store.create_code(&rec, 100).await.unwrap();
        assert_eq!(
            store.find_code(&rec.code_hash).await.unwrap(),
            Some(rec.clone())
        );
        assert!(store.use_code(&rec.code_hash, 110).await.unwrap());
        assert!(
            !store.use_code(&rec.code_hash, 111).await.unwrap(),
            "single use"
        );
        store.mark_code_replayed(&rec.code_hash, 112).await.unwrap();
        let got = store.find_code(&rec.code_hash).await.unwrap().unwrap();
        assert_eq!((got.used_at, got.replayed_at), (Some(110), Some(112)));
        assert!(
            !store.use_code(&[2; 32], 110).await.unwrap(),
            "unknown code"
        );
        // Consents and sessions.
        assert_eq!(store.consent("alice", "cli").await.unwrap(), None);
        let scopes = |s| ScopeSet::parse(s).unwrap();
        store
            .save_consent("alice", "cli", &scopes("a"), 1)
            .await
            .unwrap();
        store
            .save_consent("alice", "cli", &scopes("a b"), 2)
            .await
            .unwrap();
        assert_eq!(
            store.consent("alice", "cli").await.unwrap(),
            Some(scopes("a b"))
        );
        // An unreadable consent is none (the human is asked again), never an error or a default.
        exec_sql(
            &db,
            "UPDATE consents SET scope = 'a  b\"' WHERE username = 'alice'",
        )
        .await;
        assert_eq!(store.consent("alice", "cli").await.unwrap(), None, "{b:?}");
        store
            .create_browser_session(&[3; 32], "alice", 100, 200)
            .await
            .unwrap();
        assert_eq!(
            store
                .browser_session(&[3; 32], 150)
                .await
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        assert_eq!(
            store.browser_session(&[3; 32], 200).await.unwrap(),
            None,
            "expired"
        );
        store.close().await;
    }
}
