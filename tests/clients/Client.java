// A legacy integration written with Java 17's HttpURLConnection: one request, the answer as JSON.
//
//   java -Djdk.net.hosts.file=HOSTS -Djavax.net.ssl.trustStore=STORE Client.java METHOD URL [-H 'Name: value']... [-d BODY]
//
// Redirects are followed the way HttpURLConnection does by default. Prints
// {"status": N, "body": "..."} or {"error": "..."}.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;

public class Client {
    public static void main(String[] args) {
        try {
            String method = args[0];
            HttpURLConnection c = (HttpURLConnection) new URL(args[1]).openConnection();
            c.setRequestMethod(method);
            c.setConnectTimeout(10000);
            c.setReadTimeout(10000);
            String body = null;
            for (int i = 2; i < args.length; i += 2) {
                if (args[i].equals("-H")) {
                    String[] kv = args[i + 1].split(": ", 2);
                    c.setRequestProperty(kv[0], kv[1]);
                } else if (args[i].equals("-d")) {
                    body = args[i + 1];
                }
            }
            if (body != null) {
                c.setDoOutput(true);
                try (OutputStream out = c.getOutputStream()) {
                    out.write(body.getBytes(StandardCharsets.UTF_8));
                }
            }
            int status = c.getResponseCode();
            InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
            String text = in == null ? "" : new String(in.readAllBytes(), StandardCharsets.UTF_8);
            System.out.println("{\"status\": " + status + ", \"body\": \"" + escape(text) + "\"}");
        } catch (Exception e) {
            System.out.println("{\"error\": \"" + escape(e.toString()) + "\"}");
        }
    }

    static String escape(String s) {
        StringBuilder b = new StringBuilder();
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') b.append('\\').append(ch);
            else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
            else b.append(ch);
        }
        return b.toString();
    }
}
