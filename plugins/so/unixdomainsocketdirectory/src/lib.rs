//! websockify's `UnixDomainSocketDirectory` resolver as a loadable plugin: `libunixdomainsocketdirectory.so`. The logic lives in
//! `websockify-tokenfile`, which the proxy also links in for `--token-plugin UnixDomainSocketDirectory`.

websockify_plugin_api::export_plugin!(websockify_tokenfile::UnixDomainSocketDirectory);
