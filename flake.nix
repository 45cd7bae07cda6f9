{
  description = "websockify-rs: a WebSocket-to-TCP bridge, a drop-in replacement for websockify";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      commit = self.shortRev or self.dirtyShortRev or "unknown commit";
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          websockify = pkgs.callPackage ./nix/package.nix { inherit commit; };
        in
        {
          inherit websockify;
          default = websockify;
          # An OCI image: `docker load < result` or `podman load < result`.
          image = pkgs.callPackage ./nix/image.nix { inherit websockify; };
        }
      );

      # nix run github:websockify-rs/websockify-rs -- 6080 localhost:5900
      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.default}/bin/websockify";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.python3
          ];
        };
      });

      nixosModules.default = import ./nix/module.nix self;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        image = self.packages.${pkgs.stdenv.hostPlatform.system}.image;
        vm = pkgs.testers.runNixOSTest (import ./nix/vm-test.nix self);
      });
    };
}
