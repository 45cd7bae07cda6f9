# A stand-in for nixpkgs, just enough to evaluate flake.nix and nix/*.nix without it: the
# builders return their arguments (so the test can look at them), `lib` has real versions
# of the functions our files use, and the module system is reduced to what the test checks.
let
  lib = rec {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    cleanSource = src: src;
    licenses.lgpl3Only = "LGPL-3.0-only";
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    mkOption = args: { _type = "option"; } // args;
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    types = {
      bool = "bool";
      str = "str";
      int = "int";
      path = "path";
      package = "package";
      nullOr = t: { nullOr = t; };
      oneOf = ts: { oneOf = ts; };
      attrsOf = t: { attrsOf = t; };
      submodule = m: { submodule = m; };
    };
    filterAttrs = pred: set:
      builtins.listToAttrs (builtins.concatMap
        (name: if pred name set.${name} then [ { inherit name; value = set.${name}; } ] else [ ])
        (builtins.attrNames set));
    mapAttrsToList = f: set: map (name: f name set.${name}) (builtins.attrNames set);
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: builtins.listToAttrs (mapAttrsToList f set);
    optional = cond: x: if cond then [ x ] else [ ];
    optionalAttrs = cond: set: if cond then set else { };
    concatLists = builtins.concatLists;
    toInt = s: builtins.fromJSON s;
    last = list: builtins.elemAt list (builtins.length list - 1);
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    toUpper = s:
      builtins.replaceStrings
        (builtins.genList (i: builtins.substring i 1 "abcdefghijklmnopqrstuvwxyz") 26)
        (builtins.genList (i: builtins.substring i 1 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") 26)
        s;
  };

  pkgsFor = system: let
    pkgs = {
      inherit lib;
      stdenv.hostPlatform.system = system;
      callPackage = fn: args:
        let
          f = if builtins.isFunction fn then fn else import fn;
          wanted = builtins.functionArgs f;
        in
        f (builtins.intersectAttrs wanted pkgs // args);
      rustPlatform.buildRustPackage = args:
        args // {
          type = "derivation";
          name = "${args.pname}-${args.version}";
          outPath = "/nix/store/00000000000000000000000000000000-${args.pname}-${args.version}";
        };
      installShellFiles = { };
      dockerTools = {
        buildLayeredImage = args: args // { type = "derivation"; };
        caCertificates = { name = "ca-certificates"; };
      };
      mkShell = args: args // { type = "derivation"; };
      testers.runNixOSTest = test: test;
      coreutils = { outPath = "/nix/store/00000000000000000000000000000000-coreutils"; };
      socat = { outPath = "/nix/store/00000000000000000000000000000000-socat"; };
      curl = { };
      python3 = { };
      clippy = { };
      rustfmt = { };
      rust-analyzer = { };
    };
  in pkgs;
in
{
  inherit lib;
  legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
}
