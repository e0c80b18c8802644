//! `oauth::act::Actor::parse` and `MayAct::parse`: the RFC 8693 `act` and `may_act` claims as
//! stored JSON text, parsed when a token row is read. They must fail closed: any text is
//! refused or gives a claim with every actor named and the chain bounded, and a parsed claim
//! prints (`to_json`) as text that parses back to an equal claim.
#![no_main]
use mandate::oauth::act::{Actor, MayAct, chain_of};

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(actor) = Actor::parse(text) {
        let chain = actor.chain();
        assert!(
            !chain.is_empty() && chain.len() <= 64,
            "chain of {}",
            chain.len()
        );
        assert!(chain.iter().all(|s| !s.is_empty()), "an actor without sub");
        assert_eq!(usize::try_from(actor.depth()).unwrap(), chain.len());
        assert_eq!(chain_of(Some(&actor)), chain);
        assert_eq!(chain.first(), Some(&actor.sub));
        let json = actor.to_json();
        assert!(!json.is_empty(), "to_json failed");
        assert_eq!(
            Actor::parse(&json).unwrap(),
            actor,
            "act does not round-trip: {json}"
        );
        // One more hop on top is still a chain the parser takes, until the bound.
        let nested = Actor::nest("agent:next", Some(&actor));
        assert_eq!(Actor::parse(&nested.to_json()).is_ok(), chain.len() < 64);
    }
    if let Ok(may_act) = MayAct::parse(text) {
        assert!(!may_act.sub.is_empty());
        let json = may_act.to_json();
        assert_eq!(
            MayAct::parse(&json).unwrap(),
            may_act,
            "may_act does not round-trip: {json}"
        );
    }
});
