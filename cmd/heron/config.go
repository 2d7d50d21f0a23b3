package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Settings of a command can come from four places; the first that has a
// value wins:
//
//  1. the command line (--cache-size 0);
//  2. the environment, HERON_ and the flag's name in upper case with "_"
//     for "-" (HERON_CACHE_SIZE=0); an empty variable counts as unset;
//  3. the YAML file given with --config (or HERON_CONFIG), whose keys are
//     the flags' names (cache-size: 0);
//  4. the flag's default.
//
// A flag that can be given several times (--pull-through) takes a list in
// the file (a YAML sequence) and comma-separated values in the
// environment; the first of the places that has it gives all its values.
//
// A key of the file that is not a flag of the command is an error, so that
// a misspelt setting is not silently ignored. Variables of the environment
// are not checked that way: it is shared with other programs.
const (
	envPrefix  = "HERON_"
	configFlag = "config"
)

// envName is the variable of the environment that sets the flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// configurable reports whether a flag can be set from the environment or
// the file: every flag but --config itself and --help.
func configurable(f *pflag.Flag) bool { return f.Name != configFlag && f.Name != "help" }

// applyConfig sets each flag of fs that the command line did not set from
// the environment (looked up with lookupEnv) or else from the configuration
// file that --config or HERON_CONFIG names.
func applyConfig(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	env := func(name string) (string, bool) {
		v, ok := lookupEnv(envName(name))
		return v, ok && v != ""
	}
	var file map[string]setting
	if cf := fs.Lookup(configFlag); cf != nil {
		path := cf.Value.String()
		if !cf.Changed {
			path, _ = env(configFlag)
		}
		if path != "" {
			var err error
			if file, err = readConfigFile(path, fs); err != nil {
				return err
			}
		}
	}
	type assignment struct {
		name, value, from string
		list              []string // a YAML sequence, for a slice flag
	}
	var todo []assignment
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || !configurable(f) {
			return
		}
		if v, ok := env(f.Name); ok {
			todo = append(todo, assignment{name: f.Name, value: v, from: envName(f.Name)})
		} else if s, ok := file[f.Name]; ok {
			todo = append(todo, assignment{name: f.Name, value: s.value, from: s.where, list: s.list})
		}
	})
	var errs []error
	for _, a := range todo {
		if a.list != nil {
			if err := fs.Lookup(a.name).Value.(pflag.SliceValue).Replace(a.list); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.from, err))
			}
			continue
		}
		if err := fs.Set(a.name, a.value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.from, err))
		}
	}
	return errors.Join(errs...)
}

// setting is one key of a configuration file: its value (or values, for a
// slice flag given a YAML sequence), and where it is for messages
// ("FILE:LINE: KEY").
type setting struct {
	value, where string
	list         []string
}

// readConfigFile reads a YAML mapping of flag names of fs to single values,
// or to sequences of single values for the flags that take several. An
// empty file sets nothing.
func readConfigFile(path string, fs *pflag.FlagSet) (map[string]setting, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: want one YAML document", path)
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil // comments only
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s:%d: want a mapping of settings (key: value)", path, root.Line)
	}
	var known []string
	fs.VisitAll(func(f *pflag.Flag) {
		if configurable(f) {
			known = append(known, f.Name)
		}
	})
	out := map[string]setting{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		where := fmt.Sprintf("config %s:%d: %s", path, k.Line, k.Value)
		if k.Kind != yaml.ScalarNode || !slices.Contains(known, k.Value) {
			return nil, fmt.Errorf("config %s:%d: unknown key %q; the keys are %s", path, k.Line, k.Value, strings.Join(known, ", "))
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("%s: set twice", where)
		}
		if _, slice := fs.Lookup(k.Value).Value.(pflag.SliceValue); slice && v.Kind == yaml.SequenceNode {
			list := []string{}
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
					return nil, fmt.Errorf("config %s:%d: %s: want a list of single values", path, item.Line, k.Value)
				}
				list = append(list, item.Value)
			}
			out[k.Value] = setting{where: where, list: list}
			continue
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return nil, fmt.Errorf("%s: want a single value", where)
		}
		out[k.Value] = setting{value: v.Value, where: where}
	}
	return out, nil
}
