package layout

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDeps guards the package boundaries of STYLE.md: layout imports only
// the standard library, image-spec and go-digest; redirector never imports
// publish, nor publish redirector.
func TestDeps(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	const mod = "github.com/heron-registry/heron/"
	out, err := exec.Command("go", "list", "-e", "-json=ImportPath,Deps", "../layout", "../publish", "../redirector").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		seen++
		for _, dep := range p.Deps {
			switch p.ImportPath {
			case mod + "layout":
				if strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") &&
					!strings.HasPrefix(dep, "github.com/opencontainers/image-spec/") &&
					!strings.HasPrefix(dep, "github.com/opencontainers/go-digest") &&
					!strings.HasPrefix(dep, "golang.org/x/") { // vendored by the standard library only
					t.Errorf("layout depends on %s", dep)
				}
			case mod + "redirector":
				if dep == mod+"publish" {
					t.Errorf("redirector imports publish")
				}
			case mod + "publish":
				if dep == mod+"redirector" {
					t.Errorf("publish imports redirector")
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("go list reported no package")
	}
}
