package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The repository's own files: what .ci/run checks.
func TestRepository(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"-main", "../../main.go", "../../docker-compose.yml"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs.String())
	}
	if !strings.Contains(out.String(), "ok") {
		t.Errorf("no ok line: %q", out.String())
	}
}

func TestGood(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"-main", "testdata/good/main.go.txt", "testdata/good/compose.yml"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs.String())
	}
	if want := "3 services; testdata/good/Dockerfile: 3 stages"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
}

// Every problem of the bad fixture is reported, each once.
func TestBad(t *testing.T) {
	var out, errs bytes.Buffer
	code := run([]string{"-main", "testdata/bad/main.go.txt", "testdata/bad/compose.yml"}, &out, &errs)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	got := errs.String()
	for _, want := range []string{
		`service app: build target "nosuchstage" is not a stage of testdata/bad/Dockerfile (stages: build, 1)`,
		"service app: env_file missing.env does not exist",
		"service app: env_file also-missing.env does not exist",
		"service app: bind-mounted ./missing-config.yml does not exist",
		"service app: volume undeclared is not declared under the top-level volumes",
		"service app: waits for db to be healthy, but db has no health check",
		"service app: depends on ghost, which is not a service",
		`service app: restart "sometimes"`,
		`service db: unknown key "depend_on"`,
		"service other: build context ./no-such-dir is not a directory",
		"testdata/bad/Dockerfile:2: COPY go.mod: no such file in the build context",
		"testdata/bad/Dockerfile:2: COPY go.sum: no such file in the build context",
		"testdata/bad/Dockerfile:3: COPY --from=bulid: no earlier stage has that name",
		"testdata/bad/Dockerfile:4: final stage: runs as root",
		"testdata/bad/Dockerfile:6: HEALTHCHECK CMD curl -f http://localhost:8080/healthz: shell form",
		"testdata/bad/main.go.txt: defines no -healthcheck flag",
		"16 problem(s)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(got, "optional.env") {
		t.Error("an optional env_file was reported")
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

// A HEALTHCHECK in exec form that runs something else, or a binary the
// final stage did not copy in, is reported.
func TestHealthcheckMustRunGetaway(t *testing.T) {
	for _, tc := range []struct{ dockerfile, want string }{
		{`FROM scratch
COPY x /app/getaway
USER 1
HEALTHCHECK CMD ["/app/getaway", "-check"]
ENTRYPOINT ["/app/getaway"]`, `HEALTHCHECK runs ["/app/getaway" "-check"], not getaway -healthcheck`},
		{`FROM scratch
USER 1
HEALTHCHECK CMD ["/app/getaway", "-healthcheck"]
ENTRYPOINT ["/app/getaway"]`, "which the final stage does not COPY in"},
		{`FROM scratch
COPY x /app/getaway
USER 1
HEALTHCHECK CMD ["/app/getaway", "-healthcheck"]
ENTRYPOINT ["/bin/other"]`, "but ENTRYPOINT runs"},
		{`FROM scratch
COPY x /app/getaway
USER 1
ENTRYPOINT ["/app/getaway"]`, "no HEALTHCHECK"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "Dockerfile")
		if err := os.WriteFile(path, []byte(tc.dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		_, problems := checkDockerfile(path, dir)
		got := strings.Join(problems, "\n")
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s\n-> %q, want %q", tc.dockerfile, got, tc.want)
		}
	}
}
