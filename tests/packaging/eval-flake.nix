# Evaluates the flake's outputs against fake-nixpkgs.nix and returns what the test checks.
let
  flake = import ../../flake.nix;
  nixpkgs = import ./fake-nixpkgs.nix;
  self = flake.outputs { inherit self nixpkgs; } // { shortRev = "abc1234"; };
  system = "x86_64-linux";
  pkgs = nixpkgs.legacyPackages.${system};
  package = self.packages.${system}.default;
  image = self.packages.${system}.image;
  # The module, given one instance the way the module system would after defaults.
  module = self.nixosModules.default {
    inherit pkgs;
    lib = nixpkgs.lib;
    config.services.websockify.instances.console = {
      enable = true;
      package = package;
      listen = "0.0.0.0:443";
      target = "127.0.0.1:5900";
      tokenPlugin = null;
      tokenSource = null;
      cert = "/run/keys/cert.pem";
      key = "/run/keys/key.pem";
      metricsListen = "127.0.0.1:9187";
      shutdownGrace = 30;
      settings = { heartbeat = 30; file_only = true; };
      openFirewall = true;
    };
  };
  service = module.config.content.systemd.services."websockify-console".serviceConfig;
  test = import ../../nix/vm-test.nix self { inherit pkgs; };
in
{
  pname = package.pname;
  version = package.version;
  commit = package.env.WEBSOCKIFY_BUILD_COMMIT;
  lockFileExists = builtins.pathExists package.cargoLock.lockFile;
  srcHasCargoToml = builtins.pathExists (package.src + "/Cargo.toml");
  postInstall = package.postInstall;
  mainProgram = package.meta.mainProgram;
  app = self.apps.${system}.default.program;
  imageEntrypoint = image.config.Entrypoint;
  imageUser = image.config.User;
  imageEnv = image.config.Env;
  shellInputs = map (p: p.pname) self.devShells.${system}.default.inputsFrom;
  instanceOptions = builtins.attrNames
    (module.options.services.websockify.instances.type.attrsOf.submodule.options);
  moduleEnabled = module.config.condition;
  execStart = service.ExecStart;
  environment = service.Environment;
  credentials = service.LoadCredential;
  capabilities = service.AmbientCapabilities;
  stopTimeout = service.TimeoutStopSec;
  firewall = module.config.content.networking.firewall.allowedTCPPorts;
  vmTestName = test.name;
  vmInstance = test.nodes.machine.services.websockify.instances.echo.target;
  checks = builtins.attrNames self.checks.${system};
}
