package policy

import (
	"embed"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
)

//go:embed packs/*.yaml
var packFiles embed.FS

// PackInfo describes a built-in pack.
type PackInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Packs returns the built-in packs, sorted by name.
func Packs() []PackInfo {
	return slices.Clone(packIndex())
}

// PackSource returns the YAML of a built-in pack.
func PackSource(name string) ([]byte, error) {
	if !isPack(name) {
		return nil, fmt.Errorf("%w %q (packs: %s)", ErrUnknownPack, name, strings.Join(packNames(), ", "))
	}
	return packFiles.ReadFile("packs/" + name + ".yaml")
}

var packIndex = sync.OnceValue(func() []PackInfo {
	entries, err := packFiles.ReadDir("packs")
	if err != nil {
		panic(fmt.Sprintf("read embedded packs: %v", err))
	}
	var out []PackInfo
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), path.Ext(e.Name()))
		src, err := packFiles.ReadFile("packs/" + e.Name())
		if err != nil {
			panic(fmt.Sprintf("read embedded pack %s: %v", name, err))
		}
		doc, err := parseDocument("pack "+name, src)
		if err != nil {
			panic(fmt.Sprintf("embedded pack %s: %v", name, err))
		}
		out = append(out, PackInfo{Name: doc.name, Description: oneLine(doc.description)})
	}
	slices.SortFunc(out, func(a, b PackInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
})

func packNames() []string {
	var names []string
	for _, p := range packIndex() {
		names = append(names, p.Name)
	}
	return names
}

func isPack(name string) bool {
	return slices.Contains(packNames(), name)
}

// compiledPacks caches each pack's compiled policy: packs are immutable,
// so every Load of a pack can share one.
var compiledPacks sync.Map // name -> func() (*Policy, error)

func pack(name string) (*Policy, error) {
	f, _ := compiledPacks.LoadOrStore(name, sync.OnceValues(func() (*Policy, error) {
		src, err := PackSource(name)
		if err != nil {
			return nil, err
		}
		return Parse("pack "+name, src)
	}))
	return f.(func() (*Policy, error))()
}
