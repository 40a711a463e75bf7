package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// MaxConfigFileBytes bounds the agent's config file.
const MaxConfigFileBytes = 1 << 20

// ErrInvalidConfigFile means the config file is malformed; the message
// says where.
var ErrInvalidConfigFile = errors.New("invalid agent config file")

// FileConfig is the reloadable part of the agent's configuration, read
// from the --config file at start and on SIGHUP:
//
//	select:
//	  - container:*
//	  - /system.slice/ci-*.scope
//	policy: no-network,/etc/glasshouse/policies/site.yaml
//
// Unknown keys are errors, so that a typo does not silently select
// nothing.
type FileConfig struct {
	// Select lists selectors (see ParseSelector).
	Select []string `json:"select"`
	// Policy is a policy reference for policy.Load: pack names and policy
	// files, comma separated. Empty evaluates no policy.
	Policy string `json:"policy"`
}

// ParseFileConfig parses a config file's content. name labels errors.
// Errors wrap ErrInvalidConfigFile; selectors are checked (ParseSelection),
// policies are not loaded.
func ParseFileConfig(name string, data []byte) (*FileConfig, error) {
	if len(data) > MaxConfigFileBytes {
		return nil, fmt.Errorf("%w: %s: %d bytes exceeds the limit of %d", ErrInvalidConfigFile, name, len(data), MaxConfigFileBytes)
	}
	var fc FileConfig
	if strings.TrimSpace(string(data)) != "" {
		// sigs.k8s.io/yaml converts YAML to JSON and decodes that strictly
		// (unknown fields and duplicate keys are errors), as kubectl does.
		if err := yaml.UnmarshalStrict(data, &fc); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidConfigFile, name, err)
		}
	}
	if len(fc.Policy) > 64<<10 {
		return nil, fmt.Errorf("%w: %s: policy reference of %d bytes exceeds the limit of %d", ErrInvalidConfigFile, name, len(fc.Policy), 64<<10)
	}
	if len(fc.Select) > 0 {
		if _, err := ParseSelection(fc.Select); err != nil {
			return nil, fmt.Errorf("%w: %s: select: %v", ErrInvalidConfigFile, name, err)
		}
	}
	return &fc, nil
}

// ReadFileConfig reads and parses the config file at path.
func ReadFileConfig(path string) (*FileConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read agent config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read agent config: %w", err)
	}
	return ParseFileConfig(path, data)
}
