package receipt

// appendIndented appends canonical, a compact JSON document without
// insignificant whitespace, indented as json.Indent(dst, canonical, "",
// "  ") would: members and elements on their own lines, ": " after keys,
// empty objects and arrays kept as {} and []. It is the stored form's
// indentation without the generic scanner (FuzzIndent checks it against
// json.Indent).
func appendIndented(b, canonical []byte) []byte {
	depth := 0
	newline := func(b []byte) []byte {
		b = append(b, '\n')
		for range depth {
			b = append(b, ' ', ' ')
		}
		return b
	}
	for i := 0; i < len(canonical); i++ {
		c := canonical[i]
		switch c {
		case '"':
			j := stringEnd(canonical, i)
			b = append(b, canonical[i:j]...)
			i = j - 1
		case '{', '[':
			b = append(b, c)
			if i+1 < len(canonical) && (canonical[i+1] == '}' || canonical[i+1] == ']') {
				b = append(b, canonical[i+1])
				i++
				continue
			}
			depth++
			b = newline(b)
		case '}', ']':
			depth--
			b = newline(b)
			b = append(b, c)
		case ',':
			b = append(b, ',')
			b = newline(b)
		case ':':
			b = append(b, ':', ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

// stringEnd returns the index just past the JSON string starting at s[i],
// or len(s) if it is not terminated.
func stringEnd(s []byte, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(s)
}

// equalIndented reports whether doc is canonical indented as Marshal
// indents it.
func equalIndented(doc, canonical []byte) bool {
	// Indentation only adds bytes: a shorter document is not it.
	if len(doc) < len(canonical) {
		return false
	}
	return string(appendIndented(make([]byte, 0, len(doc)), canonical)) == string(doc)
}

// encodedSizeHint estimates the canonical size of r, to allocate once.
func encodedSizeHint(r *Receipt) int {
	return 1024 + 160*len(r.Files) + 200*len(r.Processes) + 160*len(r.Network)
}
