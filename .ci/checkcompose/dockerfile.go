package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// instructions are the Dockerfile instructions.
var instructions = set("FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
	"ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL")

// dockerfile is what the checks need of a parsed Dockerfile.
type dockerfile struct {
	path   string
	stages []*stage
}

// stage is one FROM and what follows it, with what it inherits from an
// earlier stage it is built on.
type stage struct {
	name        string // lower case; "" when unnamed
	line        int
	workdir     string
	user        string
	entrypoint  []string        // exec form; nil when none or shell form
	healthcheck *healthcheck    // nil when none (inherited included)
	copied      map[string]bool // container paths COPY or ADD wrote
}

type healthcheck struct {
	line  int
	none  bool     // HEALTHCHECK NONE
	exec  []string // exec form
	shell string   // shell form
}

// stage returns the stage named name (or numbered, as --from allows), or
// the last stage when name is empty; nil when there is none.
func (d *dockerfile) stage(name string) *stage {
	if len(d.stages) == 0 {
		return nil
	}
	if name == "" {
		return d.stages[len(d.stages)-1]
	}
	for _, st := range d.stages {
		if st.name == strings.ToLower(name) {
			return st
		}
	}
	return nil
}

func (d *dockerfile) healthcheck(target string) *healthcheck {
	if st := d.stage(target); st != nil {
		return st.healthcheck
	}
	return nil
}

func (d *dockerfile) names() []string {
	var out []string
	for i, st := range d.stages {
		if st.name != "" {
			out = append(out, st.name)
		} else {
			out = append(out, strconv.Itoa(i))
		}
	}
	return out
}

// logicalLine is one instruction with its continuation lines joined.
type logicalLine struct {
	line int // where it starts, from 1
	text string
}

var heredocStart = regexp.MustCompile(`<<-?["']?([A-Za-z_][A-Za-z0-9_]*)["']?`)

// readInstructions splits a Dockerfile into instructions: comments and
// blank lines dropped, backslash continuations joined, heredoc bodies
// skipped.
func readInstructions(src string) []logicalLine {
	var out []logicalLine
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	var cur *logicalLine
	var heredoc string
	for sc.Scan() {
		n++
		raw := sc.Text()
		if heredoc != "" {
			if strings.TrimSpace(raw) == heredoc {
				heredoc = ""
			}
			continue
		}
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue // also inside a continuation, as Docker does
		}
		if cur == nil {
			cur = &logicalLine{line: n}
		} else {
			cur.text += " "
		}
		body, cont := strings.CutSuffix(strings.TrimRight(raw, " \t"), `\`)
		cur.text += strings.TrimSpace(body)
		if cont {
			continue
		}
		if m := heredocStart.FindStringSubmatch(cur.text); m != nil {
			heredoc = m[1]
		}
		out = append(out, *cur)
		cur = nil
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// checkDockerfile parses the Dockerfile at path, built with the context
// directory ctxDir, and returns it with its problems.
func checkDockerfile(path, ctxDir string) (*dockerfile, []string) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, []string{fmt.Sprintf("Dockerfile %s: %v", path, err)}
	}
	d := &dockerfile{path: path}
	var problems []string
	fail := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: %s", path, line, fmt.Sprintf(format, args...)))
	}
	var st *stage
	for _, in := range readInstructions(string(src)) {
		cmd, args, _ := strings.Cut(in.text, " ")
		cmd, args = strings.ToUpper(cmd), strings.TrimSpace(args)
		if !instructions[cmd] {
			fail(in.line, "unknown instruction %s", cmd)
			continue
		}
		if cmd != "FROM" && cmd != "ARG" && st == nil {
			fail(in.line, "%s before the first FROM", cmd)
			continue
		}
		switch cmd {
		case "FROM":
			st = d.from(in.line, args)
			d.stages = append(d.stages, st)
		case "WORKDIR":
			st.workdir = containerPath(st.workdir, args)
		case "USER":
			st.user = args
		case "ENTRYPOINT":
			st.entrypoint, _ = execForm(args)
		case "HEALTHCHECK":
			hc, err := parseHealthcheck(in.line, args)
			if err != nil {
				fail(in.line, "%v", err)
				continue
			}
			st.healthcheck = hc
		case "COPY", "ADD":
			for _, p := range d.copy(st, cmd, args, ctxDir) {
				fail(in.line, "%s", p)
			}
		}
	}
	if len(d.stages) == 0 {
		problems = append(problems, path+": no FROM")
		return d, problems
	}
	return d, append(problems, d.checkRuntime()...)
}

// from starts a stage; one built on an earlier stage inherits its state.
func (d *dockerfile) from(line int, args string) *stage {
	fields := strings.Fields(args)
	var image, name string
	for i := 0; i < len(fields); i++ {
		switch {
		case strings.HasPrefix(fields[i], "--"):
		case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
			name = strings.ToLower(fields[i+1])
			i++
		case image == "":
			image = fields[i]
		}
	}
	st := &stage{name: name, line: line, workdir: "/", copied: map[string]bool{}}
	if base := d.stage(image); base != nil && image != "" {
		st.workdir, st.user, st.healthcheck = base.workdir, base.user, base.healthcheck
		st.entrypoint = base.entrypoint
		for p := range base.copied {
			st.copied[p] = true
		}
	}
	return st
}

// copy checks a COPY or ADD and records what it writes. It returns the
// problems.
func (d *dockerfile) copy(st *stage, cmd, args, ctxDir string) []string {
	var from string
	for strings.HasPrefix(args, "--") {
		flag, rest, _ := strings.Cut(args, " ")
		if v, ok := strings.CutPrefix(flag, "--from="); ok {
			from = v
		}
		args = strings.TrimSpace(rest)
	}
	words, ok := execForm(args)
	if !ok {
		words = strings.Fields(args)
	}
	if len(words) < 2 {
		return []string{cmd + " needs a source and a destination"}
	}
	sources, dest := words[:len(words)-1], words[len(words)-1]
	var problems []string
	for _, src := range sources {
		if strings.HasPrefix(src, "<<") {
			return nil // a heredoc: the content is inline
		}
		target := containerPath(st.workdir, dest)
		if strings.HasSuffix(dest, "/") || len(sources) > 1 {
			target = path.Join(target, path.Base(src))
		}
		st.copied[target] = true
		switch {
		case from != "":
			if d.stage(from) == nil && !looksLikeImage(from) && !isEarlierIndex(from, len(d.stages)) {
				return []string{fmt.Sprintf("%s --from=%s: no earlier stage has that name", cmd, from)}
			}
		case cmd == "ADD" && (strings.Contains(src, "://") || strings.HasPrefix(src, "git@")):
		case !within(ctxDir, src):
			problems = append(problems, fmt.Sprintf("%s %s: outside the build context", cmd, src))
		default:
			if matches, _ := filepath.Glob(filepath.Join(ctxDir, src)); len(matches) == 0 {
				problems = append(problems, fmt.Sprintf("%s %s: no such file in the build context %s", cmd, src, ctxDir))
			}
		}
	}
	return problems
}

func looksLikeImage(ref string) bool { return strings.ContainsAny(ref, "/:.@") }

func isEarlierIndex(s string, n int) bool {
	i, err := strconv.Atoi(s)
	return err == nil && i >= 0 && i < n
}

// containerPath resolves p against the working directory dir.
func containerPath(dir, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(dir, p)
}

// execForm parses the JSON array form of an instruction's arguments.
func execForm(args string) ([]string, bool) {
	if !strings.HasPrefix(args, "[") {
		return nil, false
	}
	var words []string
	if err := json.Unmarshal([]byte(args), &words); err != nil {
		return nil, false
	}
	return words, true
}

// parseHealthcheck parses HEALTHCHECK's arguments: NONE, or options then
// CMD in exec or shell form.
func parseHealthcheck(line int, args string) (*healthcheck, error) {
	if strings.EqualFold(strings.TrimSpace(args), "NONE") {
		return &healthcheck{line: line, none: true}, nil
	}
	for strings.HasPrefix(args, "--") {
		_, rest, _ := strings.Cut(args, " ")
		args = strings.TrimSpace(rest)
	}
	word, rest, _ := strings.Cut(args, " ")
	if !strings.EqualFold(word, "CMD") {
		return nil, fmt.Errorf("HEALTHCHECK: expected NONE or [OPTIONS] CMD ..., got %q", args)
	}
	rest = strings.TrimSpace(rest)
	if words, ok := execForm(rest); ok {
		return &healthcheck{line: line, exec: words}, nil
	}
	return &healthcheck{line: line, shell: rest}, nil
}

// checkRuntime checks the final stage, the image `docker build` makes: a
// user other than root, and a HEALTHCHECK that runs `getaway -healthcheck`
// in exec form with the binary ENTRYPOINT runs, which the stage copied in.
func (d *dockerfile) checkRuntime() []string {
	st := d.stages[len(d.stages)-1]
	at := fmt.Sprintf("%s:%d: final stage", d.path, st.line)
	var problems []string
	if u, _, _ := strings.Cut(st.user, ":"); u == "" || u == "root" || u == "0" {
		problems = append(problems, at+": runs as root (no USER, or USER root)")
	}
	hc := st.healthcheck
	switch {
	case hc == nil || hc.none:
		return append(problems, at+": no HEALTHCHECK (it must run getaway -healthcheck)")
	case hc.exec == nil:
		return append(problems, fmt.Sprintf("%s:%d: HEALTHCHECK CMD %s: shell form; the runtime image has no shell, use the exec form [\"/app/getaway\", \"-healthcheck\"]", d.path, hc.line, hc.shell))
	}
	if len(hc.exec) != 2 || path.Base(hc.exec[0]) != "getaway" || hc.exec[1] != "-healthcheck" {
		return append(problems, fmt.Sprintf("%s:%d: HEALTHCHECK runs %q, not getaway -healthcheck", d.path, hc.line, hc.exec))
	}
	if len(st.entrypoint) == 0 || st.entrypoint[0] != hc.exec[0] {
		problems = append(problems, fmt.Sprintf("%s:%d: HEALTHCHECK runs %s, but ENTRYPOINT runs %q", d.path, hc.line, hc.exec[0], st.entrypoint))
	}
	if !st.copied[containerPath(st.workdir, hc.exec[0])] {
		problems = append(problems, fmt.Sprintf("%s:%d: HEALTHCHECK runs %s, which the final stage does not COPY in", d.path, hc.line, hc.exec[0]))
	}
	return problems
}
