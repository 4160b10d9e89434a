//! Bearer-token authentication of `serve --http`: the token (never shown, zeroed on drop), its
//! constant-time comparison, and the middleware that answers `401` before rmcp sees a request.

use std::ffi::OsString;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{HttpError, MIN_TOKEN_LEN};

/// A bearer token; its value never appears in `Debug`, messages or logs, and is zeroed on drop.
#[derive(Clone)]
pub struct BearerToken(Zeroizing<String>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// A token from its value; `source_name` says where it came from, for the error message.
    /// Surrounding whitespace (a trailing newline from a file) is trimmed.
    pub fn new(value: &str, source_name: &str) -> Result<BearerToken, HttpError> {
        let value = value.trim();
        let len = value.chars().count();
        if len < MIN_TOKEN_LEN {
            return Err(HttpError::TokenTooShort {
                source_name: source_name.to_string(),
                len,
                min: MIN_TOKEN_LEN,
            });
        }
        Ok(BearerToken(Zeroizing::new(value.to_string())))
    }

    /// The token from the environment variable `name`, read through `lookup` (pass
    /// `std::env::var_os` in production, a map in tests).
    pub(crate) fn from_env(
        name: &str,
        lookup: impl FnOnce(&str) -> Option<OsString>,
    ) -> Result<BearerToken, HttpError> {
        let missing = || HttpError::TokenEnvMissing {
            name: name.to_string(),
        };
        let raw = lookup(name).ok_or_else(missing)?;
        let value = Zeroizing::new(raw.into_string().map_err(|_| missing())?);
        BearerToken::new(&value, &format!("${name}"))
    }

    /// Whether an `Authorization` header value carries this token (`Bearer <token>`, scheme
    /// case-insensitive). Constant time in the token's contents.
    pub(super) fn accepts(&self, authorization: &[u8]) -> bool {
        let Some((scheme, rest)) = split_scheme(authorization) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer") && tokens_equal(rest, self.0.as_bytes())
    }
}

/// `scheme SP+ credentials` → (scheme, credentials).
pub(super) fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let start = rest.iter().position(|b| *b != b' ')?;
    Some((scheme, rest.get(start..)?))
}

/// Compares a presented token with the expected one in time that depends only on the expected
/// token's length: every byte of `expected` is compared, whatever `presented` is.
pub(super) fn tokens_equal(presented: &[u8], expected: &[u8]) -> bool {
    let mut same = (presented.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, e) in expected.iter().enumerate() {
        // Past the end of a shorter presented token compare against a byte that cannot match.
        let p = presented.get(i).copied().unwrap_or(!*e);
        same &= p.ct_eq(e);
    }
    same.into()
}

/// Refuses, with a bare 401, any request without the right bearer token.
pub(super) async fn require_token(
    State(token): State<Arc<BearerToken>>,
    request: Request,
    next: Next,
) -> Response {
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let accepted = match (values.next(), values.next()) {
        (Some(value), None) => token.accepts(value.as_bytes()),
        _ => false,
    };
    if accepted {
        return next.run(request).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
