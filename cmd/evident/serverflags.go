package main

import (
	"flag"

	"evident.dev/evident/server"
)

// serverFlags are the flags of the commands that work on a server's log
// (serve, restore, anchor): its configuration file and data directory and,
// for those that sign as the log, its origin. The help texts differ by
// command.
type serverFlags struct {
	config, data, origin *string
}

func addServerFlags(fs *flag.FlagSet, configHelp, dataHelp string) *serverFlags {
	return &serverFlags{config: fs.String("config", "", configHelp), data: fs.String("data", "", dataHelp)}
}

// addOrigin adds --origin.
func (f *serverFlags) addOrigin(fs *flag.FlagSet, help string) {
	f.origin = fs.String("origin", "", help)
}

// load reads the configuration and lets the flags override it; the data
// directory and the origin (with --origin) get their defaults.
func (f *serverFlags) load() (*server.Config, error) {
	cfg, err := server.LoadConfig(*f.config)
	if err != nil {
		return nil, err
	}
	cfg.Version = buildVersion()
	cfg.Data = firstOf(*f.data, cfg.Data, server.DefaultData)
	if f.origin != nil {
		cfg.Log.Origin = firstOf(*f.origin, cfg.Log.Origin, server.DefaultOrigin)
	}
	return cfg, nil
}
