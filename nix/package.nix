# The binary, its man page and completions, the plugin libraries in lib/, and the rebind shim
# in lib/websockify/ where the binary looks for it.
{
  lib,
  rustPlatform,
  installShellFiles,
  commit ? "unknown commit",
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "websockify-rs";
  version = cargoToml.workspace.package.version;

  src = lib.cleanSource ../.;
  cargoLock.lockFile = ../Cargo.lock;

  # Every member: the binary, the plugin libraries, the shim, the docs generator.
  cargoBuildFlags = [ "--workspace" ];
  # The integration tests need a network and Debian packages (Redis, Prometheus); the
  # unit tests run here.
  cargoTestFlags = [
    "--workspace"
    "--lib"
  ];

  env.WEBSOCKIFY_BUILD_COMMIT = commit;

  nativeBuildInputs = [ installShellFiles ];

  postInstall = ''
    mkdir -p $out/lib/websockify
    mv $out/lib/librebind.so $out/lib/websockify/
    # The misbehaving plugin exists for the tests only.
    rm -f $out/lib/libbrokenplugin.so
    $out/bin/websockify-gen-docs docs-out
    rm $out/bin/websockify-gen-docs
    installManPage docs-out/man/websockify.1 docs-out/man/websockify-sessions.1
    installShellCompletion --cmd websockify \
      --bash docs-out/completions/websockify.bash \
      --zsh docs-out/completions/_websockify \
      --fish docs-out/completions/websockify.fish
  '';

  meta = {
    description = "WebSocket-to-TCP bridge, a drop-in replacement for websockify";
    homepage = "https://github.com/websockify-rs/websockify-rs";
    license = lib.licenses.lgpl3Only;
    mainProgram = "websockify";
    platforms = lib.platforms.linux;
  };
}
