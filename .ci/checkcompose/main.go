// Command checkcompose checks, without a Docker engine, what can be checked
// of a Compose file and of the Dockerfiles it builds:
//
//   - the Compose file parses as YAML, with known top-level and service keys;
//   - every file it names exists: build contexts and Dockerfiles, env_file
//     entries that are required (a plain entry is), bind-mounted sources under
//     the project directory, config and secret files; a build target is a
//     stage of its Dockerfile; named volumes are declared; depends_on names
//     services, and a service_healthy one has a health check;
//   - every Dockerfile it builds parses into known instructions; every COPY
//     and ADD source exists in the build context, and --from names an
//     earlier stage; the final stage's HEALTHCHECK runs, in exec form (the
//     runtime image has no shell), the binary its ENTRYPOINT runs with
//     -healthcheck, a file the stage copies in; and the gateway's main.go
//     (-main) defines that flag.
//
// Usage: go run ./.ci/checkcompose [-main main.go] docker-compose.yml...
// It prints every problem found and exits 1 when there is one.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("checkcompose", flag.ContinueOnError)
	flags.SetOutput(stderr)
	mainGo := flags.String("main", "main.go", "the gateway's main.go, which must define -healthcheck (empty: not checked)")
	if err := flags.Parse(args); err != nil || flags.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: checkcompose [-main main.go] COMPOSE_FILE...")
		return 2
	}
	var problems []string
	for _, path := range flags.Args() {
		summary, ps := checkComposeFile(path)
		problems = append(problems, ps...)
		if len(ps) == 0 {
			fmt.Fprintf(stdout, "checkcompose: %s: ok (%s)\n", path, summary)
		}
	}
	if *mainGo != "" {
		problems = append(problems, checkHealthcheckFlag(*mainGo)...)
	}
	for _, p := range problems {
		fmt.Fprintln(stderr, "checkcompose:", p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "checkcompose: %d problem(s)\n", len(problems))
		return 1
	}
	return 0
}

// healthcheckFlag is how main.go defines -healthcheck (flag.FlagSet.Bool).
var healthcheckFlag = regexp.MustCompile(`\.Bool\(\s*"healthcheck"\s*,`)

// checkHealthcheckFlag reports a main.go that does not define -healthcheck,
// the flag every checked HEALTHCHECK passes.
func checkHealthcheckFlag(path string) []string {
	src, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	if !healthcheckFlag.Match(src) {
		return []string{path + `: defines no -healthcheck flag (flags.Bool("healthcheck", ...)), which HEALTHCHECK runs`}
	}
	return nil
}

// exists reports whether path names an existing file or directory.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// interpolated reports whether s uses Compose variables, whose value this
// check cannot know; such paths are not checked.
func interpolated(s string) bool { return strings.Contains(s, "$") }

// within reports whether path, relative to base, stays inside base.
func within(base, path string) bool {
	rel, err := filepath.Rel(base, filepath.Join(base, path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
