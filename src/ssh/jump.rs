//! Tunnels through bastions (ProxyJump) with our own client: a `direct-tcpip` channel of the
//! bastion's SSH session, used as the byte stream of the next host's SSH session.
//!
//! The bastion only relays bytes: the host's key exchange, host key check and authentication
//! run end to end between us and the host, over the channel, exactly as over TCP. The pool
//! ([`super::pool`]) decides which session is the bastion and keeps it.

use russh::ChannelStream;
use russh::client;

/// Opens a channel from `bastion` to `host:port` and returns it as a stream. The error text
/// says why the bastion refused (e.g. the host refused the bastion's connection).
pub(crate) async fn tunnel<H: client::Handler>(
    bastion: &client::Handle<H>,
    host: &str,
    port: u16,
) -> Result<ChannelStream<client::Msg>, String> {
    let channel = bastion
        .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
        .await
        .map_err(|e| match e {
            russh::Error::ChannelOpenFailure(reason) => format!(
                "the bastion refused the channel ({})",
                match reason {
                    russh::ChannelOpenFailure::AdministrativelyProhibited =>
                        "administratively prohibited: TCP forwarding is off for this user",
                    russh::ChannelOpenFailure::ConnectFailed =>
                        "connect failed: nothing listens there, or the bastion has no route to it",
                    russh::ChannelOpenFailure::UnknownChannelType => "unknown channel type",
                    russh::ChannelOpenFailure::ResourceShortage => "resource shortage",
                    _ => "unknown reason",
                }
            ),
            other => other.to_string(),
        })?;
    Ok(channel.into_stream())
}
