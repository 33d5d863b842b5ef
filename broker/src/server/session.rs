//! What a connection knows about its client, for the whole life of the connection: the
//! listener it came in on, the peer address, and the authenticated principal. Every
//! request's [`super::context::RequestContext`] carries it; authentication (SASL, TLS
//! client certificates) will set the principal, ACL checks will read it.
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::limits::ResponseBudget;

/// A Kafka principal (`User:alice`), as ACLs name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The principal type (`User`).
    pub kind: String,
    /// The name within the type.
    pub name: String,
}

impl Principal {
    /// Kafka's principal of an unauthenticated connection, `User:ANONYMOUS`.
    pub fn anonymous() -> Principal {
        Principal {
            kind: "User".to_string(),
            name: "ANONYMOUS".to_string(),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// The per-connection state handed to every handler.
#[derive(Debug)]
pub struct Session {
    /// The listener the client connected to: it is given that listener's endpoints.
    pub listener: Arc<str>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Response bytes this connection may have outstanding (`fetch.max.bytes`): fetches
    /// reserve from it in request order and give it back once written.
    pub responses: ResponseBudget,
    principal: RwLock<Principal>,
}

impl Session {
    /// A new, unauthenticated session that may have `response_bytes` of responses
    /// outstanding.
    pub fn new(listener: Arc<str>, peer: SocketAddr, response_bytes: usize) -> Session {
        Session {
            listener,
            peer,
            responses: ResponseBudget::new(response_bytes),
            principal: RwLock::new(Principal::anonymous()),
        }
    }

    /// Who the client is (`User:ANONYMOUS` until it authenticates).
    pub fn principal(&self) -> Principal {
        self.principal.read().clone()
    }

    /// Records the principal a successful authentication established.
    pub fn authenticated(&self, principal: Principal) {
        *self.principal.write() = principal;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_anonymous_and_take_the_authenticated_principal() {
        let s = Session::new(
            Arc::from("PLAINTEXT"),
            "127.0.0.1:5000".parse().unwrap(),
            1024,
        );
        assert_eq!(s.principal().to_string(), "User:ANONYMOUS");
        s.authenticated(Principal {
            kind: "User".into(),
            name: "alice".into(),
        });
        assert_eq!(s.principal().to_string(), "User:alice");
        assert_eq!(&*s.listener, "PLAINTEXT");
    }
}
