<!DOCTYPE html>
<html lang="{{ str_replace('_', '-', app()->getLocale()) }}">
<head>
    <meta charset="utf-8">
    <title>{{ $name }}</title>
</head>
<body>
    <h1>{{ $name }}</h1>
    <p>Version <span id="version">{{ $version }}</span>, Laravel {{ $laravel }}.</p>
    <p><span id="notes">{{ $notes }}</span> {{ \Illuminate\Support\Str::plural('note', $notes) }} in the database.</p>
</body>
</html>
